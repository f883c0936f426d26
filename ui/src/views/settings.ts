// *Settings*: every setting, where its value comes from, and a form to
// change the ones IT does not manage. Save writes the user's settings file
// (PUT /admin/api/settings). The ACK timeout and the grace period apply at
// once; the hub reads the others when it next starts, so those say
// "applies after restart". Keys IT locked are shown read-only with
// "Managed by your IT".

import { call } from '../api';
import { bytes, h, NONE, type Child } from '../dom';
import { FetchedView } from './base';

interface Item {
  key: string;
  label: string;
  kind: 'number' | 'bool' | 'list' | 'text';
  unit: string;
  value: unknown;
  source: 'default' | 'system' | 'user' | 'flag';
  managed: boolean;
  running: unknown;
  pendingRestart: boolean;
  readBy: 'hub' | 'tray';
}

interface SettingsAnswer {
  files: { system: string; user: string } | null;
  editable: boolean;
  settings: Item[];
  warnings: string[];
  restartNeeded?: string[];
  appliedNow?: string[];
  overriddenByFlag?: string[];
}

const SOURCE = {
  default: 'Default',
  system: 'Your IT (system file)',
  user: 'You (your settings file)',
  flag: 'Command-line flag',
};

function show(v: unknown): string {
  if (v === null || v === undefined) return NONE;
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (Array.isArray(v)) return v.length ? v.join(', ') : NONE;
  return String(v);
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The audit trail as a file (`GET /admin/api/audit`): CSV or NDJSON, all
 * of it or a range of days. Days are the browser's local days, sent as
 * RFC 3339 instants (the export's times are UTC).
 */
function auditExport(): HTMLElement {
  const format = h('select', { id: 'audit-format' }, h('option', { value: 'csv' }, 'CSV'), h('option', { value: 'ndjson' }, 'NDJSON'));
  const since = h('input', { id: 'audit-since', type: 'date' });
  const until = h('input', { id: 'audit-until', type: 'date' });
  const link = h('a', { class: 'button', id: 'audit-link', 'data-key': 'audit-export' }, 'Export audit trail');
  const problem = h('p', { class: 'error', role: 'alert', hidden: true });
  const update = () => {
    const q = new URLSearchParams({ format: format.value });
    // Midnight local time at the start of `since`, and at the end of `until`.
    if (since.value) q.set('since', new Date(`${since.value}T00:00:00`).toISOString());
    if (until.value) {
      const end = new Date(`${until.value}T00:00:00`);
      end.setDate(end.getDate() + 1);
      q.set('until', end.toISOString());
    }
    const bad = since.value && until.value && since.value > until.value;
    problem.hidden = !bad;
    problem.textContent = bad ? 'The range ends before it starts.' : '';
    if (bad) link.removeAttribute('href');
    else link.setAttribute('href', `/admin/api/audit?${q}`);
    link.setAttribute('download', `lockstep-audit.${format.value}`);
  };
  for (const el of [format, since, until]) el.addEventListener('change', update);
  update();
  return h(
    'section',
    { class: 'audit-export', 'aria-labelledby': 'audit-heading' },
    h('h2', { id: 'audit-heading' }, 'Audit trail'),
    h('p', {}, 'Who changed what, and when (times in UTC). Leave the dates empty for everything kept.'),
    h(
      'div',
      { class: 'row' },
      h('label', { for: 'audit-format' }, 'Format '),
      format,
      h('label', { for: 'audit-since' }, 'From '),
      since,
      h('label', { for: 'audit-until' }, 'To (inclusive) '),
      until,
      link,
    ),
    problem,
  );
}

export class SettingsView extends FetchedView<SettingsAnswer> {
  readonly label = 'Settings';
  protected readonly source = {
    path: '/admin/api/settings',
    what: 'the settings',
    missing: 'This hub cannot show its settings.',
  };
  /** What the last save did, read out by screen readers. */
  private saved = '';

  protected pick(answer: unknown): SettingsAnswer {
    return answer as SettingsAnswer;
  }

  protected content(): Child[] {
    const model = this.store.model;
    return [
      model && h('p', {}, `Hub ${model.hub.version} at `, h('code', {}, model.hub.url), '.'),
      model?.hub.databaseBytes != null &&
        h(
          'p',
          { 'data-key': 'database-size' },
          `Database: ${bytes(model.hub.databaseBytes)} on disk`,
          model.hub.journalMaxBytes ? ` (event journal kept within ${bytes(model.hub.journalMaxBytes)}).` : '.',
        ),
      this.fetched((a) => this.form(a)),
      this.logs(),
      auditExport(),
    ];
  }

  /** Where the logs are: the tray says (it writes them); a bare hub logs to stderr. */
  private logs(): HTMLElement {
    const dir = window.__LOCKSTEP_LOGS_DIR__;
    return h(
      'section',
      { class: 'logs', 'aria-labelledby': 'logs-heading', 'data-key': 'logs' },
      h('h2', { id: 'logs-heading' }, 'Logs'),
      dir
        ? h('p', {}, 'Log files (one a day, times in UTC) are in ', h('code', { class: 'logs-dir' }, dir), '. Open them from the tray: “Open logs folder”.')
        : h('p', {}, 'This hub writes its log to standard error: see how lockstep-hub was started (service manager, terminal). The tray app keeps daily log files; its menu has “Open logs folder”.'),
    );
  }

  private intro(a: SettingsAnswer): Child[] {
    if (!a.files) {
      return [h('p', {}, 'This hub was started without settings files: the values below are read-only.')];
    }
    return [
      h(
        'p',
        {},
        'Changes are saved to your settings file ',
        h('code', {}, a.files.user),
        '. The ACK timeout and the grace period apply at once, the others when the hub restarts. Settings marked “Managed by your IT” come from ',
        h('code', {}, a.files.system),
        ' and cannot be changed here. A command-line flag wins over both files.',
      ),
      a.warnings.length > 0 &&
        h(
          'ul',
          { class: 'warnings', 'aria-label': 'Settings warnings' },
          a.warnings.map((w) => h('li', {}, w)),
        ),
    ];
  }

  private input(item: Item, editable: boolean): HTMLElement {
    const id = `set-${item.key}`;
    const common = { id, name: item.key, 'data-key': id, 'aria-describedby': `${id}-note` };
    if (!editable) {
      return h('output', { id, 'data-key': id, 'aria-labelledby': `${id}-label`, 'aria-describedby': `${id}-note` }, show(item.value));
    }
    switch (item.kind) {
      case 'bool':
        return h('input', { ...common, type: 'checkbox', checked: item.value === true });
      case 'number':
        return h('input', { ...common, type: 'number', min: 0, step: 1, inputmode: 'numeric', value: String(item.value ?? ''), required: true });
      case 'list':
        return h('input', {
          ...common,
          type: 'text',
          value: Array.isArray(item.value) ? item.value.join(', ') : '',
          placeholder: 'https://viewer.hospital.org, …',
          autocomplete: 'off',
        });
      default:
        return h('input', { ...common, type: 'text', value: String(item.value ?? ''), autocomplete: 'off' });
    }
  }

  /** The value an input holds now, in the API's type. */
  private read(item: Item, el: HTMLInputElement): unknown {
    switch (item.kind) {
      case 'bool':
        return el.checked;
      case 'number':
        return el.value.trim() === '' ? null : Number(el.value);
      case 'list':
        return el.value
          .split(/[\s,]+/)
          .map((s) => s.trim())
          .filter(Boolean);
      default:
        return el.value.trim();
    }
  }

  private form(a: SettingsAnswer): HTMLElement {
    const rows = a.settings.map((item) => {
      const editable = a.editable && !item.managed;
      const id = `set-${item.key}`;
      const label = item.unit ? `${item.label} (${item.unit})` : item.label;
      const notes: Child[] = [
        item.managed && h('span', { class: 'badge managed' }, 'Managed by your IT'),
        item.pendingRestart && h('span', { class: 'badge restart' }, 'Applies after restart'),
        item.source === 'flag' && h('span', { class: 'note' }, 'Set by a flag: the file value is ignored'),
        item.readBy === 'tray' && h('span', { class: 'note' }, 'Read by the tray app'),
      ];
      return h(
        'tr',
        { 'data-setting': item.key, 'data-managed': item.managed ? 'true' : 'false' },
        h('th', { scope: 'row' }, editable ? h('label', { for: id }, label) : h('span', { id: `${id}-label` }, label)),
        h('td', {}, this.input(item, editable)),
        h(
          'td',
          {},
          SOURCE[item.source] ?? item.source,
          // Only what the user's own file sets can be taken back to IT's
          // value or the default (`null` removes the key from the file).
          editable &&
            item.source === 'user' &&
            h(
              'button',
              {
                type: 'button',
                class: 'reset',
                'data-key': `${id}-reset`,
                'aria-label': `Reset ${item.label} to the value of your IT or the default`,
                onclick: () => void this.save({ [item.key]: null }),
              },
              'Reset',
            ),
        ),
        h('td', { id: `${id}-note` }, notes),
      );
    });
    const status = h('p', { class: 'saved', role: 'status', tabindex: -1 }, this.saved);
    const submit = async (e: Event) => {
      e.preventDefault();
      const changes: Record<string, unknown> = {};
      for (const item of a.settings) {
        if (item.managed || !a.editable) continue;
        const el = this.querySelector<HTMLInputElement>(`#set-${CSS.escape(item.key)}`);
        if (!el) continue;
        const value = this.read(item, el);
        if (!same(value, item.value)) changes[item.key] = value;
      }
      if (Object.keys(changes).length === 0) {
        this.saved = 'Nothing changed.';
        this.update();
        return;
      }
      await this.save(changes);
    };
    return h(
      'form',
      { class: 'settings-form', 'aria-label': 'Hub settings', onsubmit: (e: Event) => void submit(e) },
      this.intro(a),
      h(
        'table',
        { class: 'settings' },
        h('caption', { class: 'visually-hidden' }, 'Hub settings'),
        h(
          'thead',
          {},
          h('tr', {}, h('th', { scope: 'col' }, 'Setting'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Set by'), h('th', { scope: 'col' }, 'Notes')),
        ),
        h('tbody', {}, rows),
      ),
      a.editable && h('button', { type: 'submit', 'data-key': 'settings-save' }, 'Save'),
      status,
    );
  }

  /** Saves `changes` (`null`: back to IT's value or the default) and says what happened. */
  private async save(changes: Record<string, unknown>): Promise<void> {
    const answer = (await this.run('Saving the settings', () => call<SettingsAnswer>('PUT', '/admin/api/settings', changes))) as
      | SettingsAnswer
      | undefined;
    if (!answer) return;
    this.data = answer;
    const label = (k: string) => answer.settings.find((i) => i.key === k)?.label ?? k;
    const restart = (answer.restartNeeded ?? []).map(label);
    const now = (answer.appliedNow ?? []).map(label);
    const flag = (answer.overriddenByFlag ?? []).map(label);
    this.saved = [
      'Saved.',
      now.length ? `Applied now: ${now.join(', ')}.` : '',
      restart.length ? `Applies after restart: ${restart.join(', ')}.` : '',
      flag.length ? `A command-line flag still wins for: ${flag.join(', ')}.` : '',
    ]
      .filter(Boolean)
      .join(' ');
    this.update();
    this.querySelector<HTMLElement>('p.saved')?.focus();
  }
}

customElements.define('ls-settings', SettingsView);
