// The dashboard shell: a header (hub, live link, pause/resume sync), a
// nav of plain links (#now, #apps, …: Tab and Enter, the browser's back
// button) and one visible view. Each view is a custom element fed by the
// Store.

import { Store } from './api';
import { h, render } from './dom';
import { tickCountdowns } from './views/apps';
import './views/apps';
import type { View } from './views/base';
import './views/events';
import './views/now';
import './views/registrations';
import './views/settings';

const VIEWS = [
  ['now', 'Now', 'ls-now'],
  ['apps', 'Apps', 'ls-apps'],
  ['events', 'Events', 'ls-events'],
  ['registrations', 'Registrations', 'ls-registrations'],
  ['settings', 'Settings', 'ls-settings'],
] as const;

const LINK_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  offline: 'Hub unreachable: retrying',
  unauthorized: 'Not signed in: open the dashboard from the tray or a new one-time link',
};

class App extends HTMLElement {
  private store = new Store();
  private views = new Map<string, View>();
  private links = new Map<string, HTMLAnchorElement>();
  private status = h('span', { class: 'link', role: 'status' });
  private hubInfo = h('span', { class: 'hub-info' });
  private banner = h('p', { class: 'banner', role: 'alert', hidden: true });
  private pauseButton = h('button', { type: 'button', 'data-key': 'pause-delivery' });

  connectedCallback(): void {
    const main = h('main', { id: 'main', tabindex: -1 });
    const nav = h(
      'nav',
      { 'aria-label': 'Views' },
      h(
        'ul',
        {},
        VIEWS.map(([id, label]) => {
          const a = h('a', { href: `#${id}`, id: `nav-${id}` }, label);
          this.links.set(id, a);
          return h('li', {}, a);
        }),
      ),
    );
    for (const [id, , tag] of VIEWS) {
      const view = document.createElement(tag) as View;
      view.id = `view-${id}`;
      view.hidden = true;
      view.setAttribute('aria-labelledby', `nav-${id}`);
      view.bind(this.store);
      this.views.set(id, view);
      main.append(view);
    }
    this.pauseButton.addEventListener('click', () => {
      const paused = this.store.model?.hub.paused;
      void this.store.act('POST', paused ? '/admin/api/resume' : '/admin/api/pause').catch(() => undefined);
    });
    render(
      this,
      h('a', { class: 'skip', href: '#main', onclick: (e: Event) => (e.preventDefault(), main.focus()) }, 'Skip to content'),
      h(
        'header',
        { class: 'top' },
        h('p', { class: 'brand' }, 'Lockstep'),
        this.hubInfo,
        this.status,
        this.pauseButton,
      ),
      this.banner,
      nav,
      main,
    );
    this.store.addEventListener('change', () => this.header());
    addEventListener('hashchange', () => this.route(true));
    this.route(false);
    this.header();
    setInterval(() => tickCountdowns(this), 1000);
    void this.store.start();
  }

  private route(focus: boolean): void {
    const id = location.hash.replace(/^#/, '') || 'now';
    const current = this.views.has(id) ? id : 'now';
    for (const [vid, view] of this.views) {
      if (vid === current) view.show(focus);
      else view.hidden = true;
      const link = this.links.get(vid);
      if (vid === current) link?.setAttribute('aria-current', 'page');
      else link?.removeAttribute('aria-current');
    }
    document.title = `${VIEWS.find(([v]) => v === current)?.[1]} — Lockstep`;
  }

  private header(): void {
    const { model, link } = this.store;
    this.status.textContent = LINK_TEXT[link];
    this.status.className = `link ${link}`;
    this.hubInfo.textContent = model ? `hub ${model.hub.version} · ${model.hub.url}` : '';
    const paused = model?.hub.paused ?? false;
    this.pauseButton.textContent = paused ? 'Resume sync' : 'Pause sync';
    this.pauseButton.hidden = !model;
    this.banner.hidden = !paused;
    this.banner.textContent = paused
      ? 'Sync is paused: apps are not told about new events. The hub still accepts and applies them; Resume sync sends every app the current context.'
      : '';
  }
}

customElements.define('ls-app', App);
