// *Events*: the live log, newest first: what came in, what the hub made,
// and which apps were told. Filter by topic, event and app; pause the log
// (the hub keeps delivering); expand an entry to its JSON; export NDJSON.

import type { LogEntry } from '../api';
import { h, rawJson, short, time, type Child } from '../dom';
import { View } from './base';

const ALL = '';
const DIRECTION: Record<LogEntry['direction'], string> = {
  in: 'published',
  derived: 'derived by the hub',
  out: 'sent by the hub',
};

export class EventsView extends View {
  readonly label = 'Events';
  private topic = ALL;
  private event = ALL;
  private app = ALL;
  /** While paused: the log as it was when paused. */
  private frozen: LogEntry[] | null = null;

  protected content(): Child[] {
    const log = this.store.log;
    const shown = this.frozen ?? log;
    const topics = uniq(log.map((e) => e.topic));
    const events = uniq(log.map((e) => e.name));
    const apps = uniq(log.flatMap((e) => [...e.deliveredTo, ...(e.app ? [e.app] : [])]));
    const filtered = shown
      .filter((e) => this.topic === ALL || e.topic === this.topic)
      .filter((e) => this.event === ALL || e.name.toLowerCase() === this.event.toLowerCase())
      .filter((e) => this.app === ALL || e.app === this.app || e.deliveredTo.includes(this.app))
      .slice()
      .reverse();
    const waiting = this.frozen ? log.length - this.frozen.length : 0;
    return [
      h(
        'form',
        { class: 'filters', 'aria-label': 'Filter events', onsubmit: (e: Event) => e.preventDefault() },
        this.select('filter-topic', 'Topic', topics, this.topic, (v) => (this.topic = v), (t) => short(t, 12)),
        this.select('filter-event', 'Event', events, this.event, (v) => (this.event = v)),
        this.select('filter-app', 'App', apps, this.app, (v) => (this.app = v)),
        h(
          'button',
          {
            type: 'button',
            'data-key': 'freeze-list',
            onclick: () => {
              this.frozen = this.frozen ? null : log.slice();
              this.update();
            },
          },
          this.frozen ? 'Unfreeze list' : 'Freeze list',
        ),
        h('a', { class: 'button', href: '/admin/api/events.ndjson', download: 'lockstep-events.ndjson', 'data-key': 'export' }, 'Export NDJSON'),
      ),
      h(
        'p',
        { class: 'muted', 'aria-live': 'polite' },
        `${filtered.length} of ${shown.length} events shown`,
        this.frozen ? ` — list frozen, ${waiting} new` : '',
      ),
      filtered.length === 0
        ? h('p', { class: 'empty' }, 'No events yet.')
        : h('ol', { class: 'log', 'aria-label': 'Events, newest first' }, filtered.map((e) => this.entry(e))),
    ];
  }

  private select(
    key: string,
    label: string,
    options: string[],
    value: string,
    set: (v: string) => void,
    show: (v: string) => string = (v) => v,
  ): HTMLElement {
    const sel = h(
      'select',
      {
        id: key,
        'data-key': key,
        onchange: (e: Event) => {
          set((e.target as HTMLSelectElement).value);
          this.update();
        },
      },
      h('option', { value: ALL }, 'All'),
      options.map((o) => h('option', { value: o, selected: o === value }, show(o))),
    );
    return h('label', { for: key }, label, ' ', sel);
  }

  private entry(e: LogEntry): HTMLElement {
    const to = e.held
      ? 'held: delivery paused'
      : e.deliveredTo.length
        ? `to ${e.deliveredTo.join(', ')}`
        : 'no app subscribed to it was connected';
    return h(
      'li',
      { class: `entry dir-${e.direction}`, 'data-seq': e.seq, 'data-event': e.name },
      h(
        'div',
        { class: 'row' },
        h('time', { datetime: e.received }, time(e.received)),
        h('strong', { class: 'event-name' }, e.name),
        h('span', { class: 'muted' }, DIRECTION[e.direction]),
        e.app && h('span', {}, `about ${e.app}`),
        h('span', {}, to),
        h('span', { class: 'muted' }, `topic ${short(e.topic, 12)}`),
      ),
      rawJson(`event-${e.seq}`, `JSON of ${e.name} #${e.seq}`, e.event),
    );
  }
}

function uniq(xs: string[]): string[] {
  return [...new Set(xs.filter(Boolean))].sort();
}

customElements.define('ls-events', EventsView);
