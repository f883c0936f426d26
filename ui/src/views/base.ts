// What every view shares: a heading that takes focus when the view is
// shown, a body re-rendered when the store changes (only while visible),
// and a place for action errors.

import { ApiError, call, type Store } from '../api';
import { h, render, type Child } from '../dom';

export abstract class View extends HTMLElement {
  protected store!: Store;
  private body = h('div', { class: 'view-body' });
  private note = h('p', { class: 'error', role: 'alert' });
  protected heading = h('h1', { tabindex: -1 });

  abstract readonly label: string;
  /** Re-render on every store change (off for views with forms). */
  protected followsStore = true;
  protected abstract content(): Child[];

  bind(store: Store): void {
    this.store = store;
    this.heading.textContent = this.label;
    this.note.hidden = true;
    this.replaceChildren(this.heading, this.note, this.body);
    store.addEventListener('change', () => {
      if (!this.hidden && this.followsStore) this.update();
    });
  }

  /** Shows the view and moves focus to its heading. */
  show(focus: boolean): void {
    this.hidden = false;
    this.update();
    if (focus) this.heading.focus();
  }

  update(): void {
    render(this.body, this.content());
  }

  /** Runs an action; shows its error, if any, where a screen reader hears it. */
  protected async run(what: string, f: () => Promise<unknown>): Promise<unknown> {
    this.note.hidden = true;
    try {
      return await f();
    } catch (e) {
      this.note.textContent = `${what} failed: ${e instanceof Error ? e.message : String(e)}`;
      this.note.hidden = false;
      return undefined;
    }
  }
}

/**
 * A view over one admin resource, fetched each time the view is shown
 * (and after its own actions) rather than pushed live: it has forms, so it
 * does not re-render on every store change.
 */
export abstract class FetchedView<T> extends View {
  protected followsStore = false;
  protected data: T | null = null;
  private unavailable = '';
  private loading = false;
  /** `GET` path, and how to name the resource in "Could not load …". */
  protected abstract readonly source: { path: string; what: string; missing: string };
  /** The resource from the API's answer. */
  protected abstract pick(answer: unknown): T;

  show(focus: boolean): void {
    void this.load();
    super.show(focus);
  }

  protected async load(): Promise<void> {
    if (this.loading) return;
    this.loading = true;
    try {
      this.data = this.pick(await call<unknown>('GET', this.source.path));
      this.unavailable = '';
    } catch (e) {
      this.unavailable =
        e instanceof ApiError && e.status === 404
          ? this.source.missing
          : `Could not load ${this.source.what}: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      this.loading = false;
      this.update();
    }
  }

  /** `f(data)` once fetched; until then "Loading…", or why it failed. */
  protected fetched(f: (data: T) => Child): Child {
    if (this.unavailable) return h('p', { class: 'empty' }, this.unavailable);
    return this.data === null ? h('p', {}, 'Loading…') : f(this.data);
  }
}

/** Buttons waiting for their confirmation, by key, until this time. */
const armedUntil = new Map<string, number>();

/**
 * A button that asks once more before doing something destructive: the
 * first press turns it into "Confirm …" for five seconds. The armed state
 * survives re-renders (live updates), keyed by `key`.
 */
export function confirmButton(key: string, label: string, aria: string, onConfirm: () => void): HTMLButtonElement {
  const b = h('button', { type: 'button', class: 'danger', 'data-key': key, 'aria-label': aria }, label);
  const show = (armed: boolean) => {
    b.textContent = armed ? `Confirm: ${label.toLowerCase()}` : label;
    b.setAttribute('aria-label', armed ? `Confirm: ${aria}` : aria);
    b.classList.toggle('armed', armed);
  };
  const until = armedUntil.get(key) ?? 0;
  if (until > Date.now()) {
    show(true);
    setTimeout(() => show(false), until - Date.now());
  }
  b.addEventListener('click', () => {
    if ((armedUntil.get(key) ?? 0) > Date.now()) {
      armedUntil.delete(key);
      show(false);
      onConfirm();
      return;
    }
    armedUntil.set(key, Date.now() + 5000);
    show(true);
    setTimeout(() => {
      if ((armedUntil.get(key) ?? 0) <= Date.now()) show(false);
    }, 5000);
  });
  return b;
}
