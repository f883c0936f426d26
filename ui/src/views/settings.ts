// *Settings*: what the hub runs with, read-only for now, and where each
// value comes from (a lockstep-hub flag, or the tray app).

import { h, NONE, type Child } from '../dom';
import { View } from './base';

function show(v: unknown): string {
  if (v === null || v === undefined) return NONE;
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return String(v);
}

export class SettingsView extends View {
  readonly label = 'Settings';

  protected content(): Child[] {
    const model = this.store.model;
    if (!model) return [h('p', {}, 'Loading…')];
    const rows = Object.entries(model.settings);
    return [
      h(
        'p',
        {},
        'Read-only here. Values marked “flag” are set when the hub starts (',
        h('code', {}, 'lockstep-hub --help'),
        '); the others are set in the tray app. ',
        `Hub ${model.hub.version} at `,
        h('code', {}, model.hub.url),
        '.',
      ),
      h(
        'table',
        { class: 'settings' },
        h('caption', { class: 'visually-hidden' }, 'Hub settings'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Setting'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Set by'))),
        h(
          'tbody',
          {},
          rows.map(([id, s]) =>
            h('tr', { 'data-setting': id }, h('th', { scope: 'row' }, s.label), h('td', {}, show(s.value)), h('td', {}, s.source)),
          ),
        ),
      ),
    ];
  }
}

customElements.define('ls-settings', SettingsView);
