// Tiny DOM helpers. Everything shown comes from apps (FHIR resources), so
// text always goes in as text nodes: no innerHTML anywhere.

export type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** `h('button', {onclick: f, 'aria-label': 'x'}, 'Drop')` */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') {
      el.addEventListener(name.replace(/^on/, ''), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
}

/** The placeholder for anything missing: never "undefined". */
export const NONE = '—';

export function text(v: unknown): string {
  if (v === null || v === undefined || v === '') return NONE;
  return String(v);
}

/**
 * Replaces `container`'s children, keeping what the user had: which
 * `<details data-key>` were open, and which `[data-key]` element had focus.
 */
export function render(container: HTMLElement, ...children: Child[]): void {
  const open = new Set<string>();
  container.querySelectorAll<HTMLDetailsElement>('details[data-key]').forEach((d) => {
    if (d.open && d.dataset.key) open.add(d.dataset.key);
  });
  const active = document.activeElement as HTMLElement | null;
  const focusKey = active && container.contains(active) ? active.dataset.key : undefined;
  const fragment = document.createDocumentFragment();
  append(fragment, children);
  fragment.querySelectorAll<HTMLDetailsElement>('details[data-key]').forEach((d) => {
    if (d.dataset.key && open.has(d.dataset.key)) d.open = true;
  });
  container.replaceChildren(fragment);
  if (focusKey) {
    const again = container.querySelector<HTMLElement>(`[data-key="${CSS.escape(focusKey)}"]`);
    again?.focus({ preventScroll: true });
  }
}

/** A definition list from label/value pairs. */
export function dl(rows: [string, Child][], cls = 'facts'): HTMLDListElement {
  return h(
    'dl',
    { class: cls },
    rows.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v ?? NONE))),
  );
}

/** The short name of the browser's time zone at `d` ("UTC", "CET", "GMT+1"). */
export function zone(d: Date): string {
  const part = new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' }).formatToParts(d).find((p) => p.type === 'timeZoneName');
  return part?.value ?? '';
}

/**
 * Local time of an ISO timestamp with its zone (logs and exports are UTC,
 * so a time without one is ambiguous), with the date when it is not today.
 */
export function time(iso: string | null | undefined): string {
  if (!iso) return NONE;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const today = new Date().toDateString() === d.toDateString();
  const t = `${d.toLocaleTimeString(undefined, { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')} ${zone(d)}`.trim();
  return today ? t : `${d.toLocaleDateString()} ${t}`;
}

/** `1 h 02 min`, `3 min 04 s`, `12 s` */
export function duration(secs: number): string {
  const s = Math.max(0, Math.round(secs));
  if (s >= 86400) return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${s} s`;
}

export function short(id: string | null | undefined, n = 8): string {
  if (!id) return NONE;
  return id.length > n ? id.slice(0, n) + '…' : id;
}

/** A `<details>` with pretty-printed JSON, rendered only when opened. */
export function rawJson(key: string, label: string, value: unknown): HTMLDetailsElement {
  const pre = h('pre', { class: 'json', tabindex: 0 });
  const d = h('details', { 'data-key': key, class: 'raw' }, h('summary', {}, label), pre);
  const fill = () => {
    if (d.open && !pre.textContent) pre.textContent = JSON.stringify(value, null, 2);
  };
  d.addEventListener('toggle', fill);
  queueMicrotask(fill);
  return d;
}

/** A byte count as people read it: "812 KB", "63.9 MB". */
export function bytes(n: number): string {
  if (n < 1024 * 1024) return `${Math.max(1, Math.round(n / 1024))} KB`;
  const mb = n / (1024 * 1024);
  return `${mb < 100 ? mb.toFixed(1) : Math.round(mb)} MB`;
}
