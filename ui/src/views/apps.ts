// *Apps*: every subscription with its state (colour and words), lease
// countdown, last ACK and its latency, queue depth, a Drop button; and the
// apps that recently left, with why.

import type { Sub } from '../api';
import { dl, duration, h, NONE, short, time, type Child } from '../dom';
import { confirmButton, View } from './base';

const ICON: Record<Sub['state'], string> = {
  connected: '●',
  grace: '◐',
  disconnected: '○',
  waiting: '◌',
};

export class AppsView extends View {
  readonly label = 'Apps';

  protected content(): Child[] {
    const model = this.store.model;
    if (!model) return [h('p', {}, 'Loading…')];
    const subs = model.topics.flatMap((t) => t.subscriptions.map((s) => ({ topic: t.topic, s })));
    const gone = model.gone;
    return [
      h('h2', {}, `Subscribed apps (${subs.length})`),
      subs.length === 0
        ? h('p', { class: 'empty' }, 'No app is subscribed.')
        : h('ul', { class: 'app-list', 'aria-label': 'Subscribed apps' }, subs.map(({ topic, s }) => this.app(topic, s))),
      h('h2', {}, `Recently gone (${gone.length})`),
      gone.length === 0
        ? h('p', { class: 'empty' }, 'No app has left since the hub started.')
        : h(
            'ul',
            { class: 'gone-list', 'aria-label': 'Recently gone apps' },
            gone.map((g) =>
              h(
                'li',
                { class: 'gone', 'data-app': g.name },
                h('strong', {}, g.name),
                ` left at ${time(g.when)} — `,
                h('span', { class: 'why' }, g.why),
                h('span', { class: 'muted' }, ` (topic ${short(g.topic, 12)})`),
              ),
            ),
          ),
    ];
  }

  private app(topic: string, s: Sub): HTMLElement {
    const fetched = this.store.fetchedAt;
    const ack = s.lastAck
      ? `${s.lastAck.status} in ${s.lastAck.latencyMs.toFixed(1)} ms (${s.lastAck.count} ACKs)`
      : 'none yet';
    const graceUntil = s.graceLeftSecs !== null ? fetched + s.graceLeftSecs * 1000 : null;
    return h(
      'li',
      { class: `app state-${s.state}`, 'data-app': s.name, 'data-state': s.state },
      h(
        'div',
        { class: 'row' },
        h('h3', {}, s.name, !s.named && h('span', { class: 'muted' }, ' (no subscriber.name)')),
        h(
          'span',
          { class: `badge ${s.state}` },
          h('span', { 'aria-hidden': 'true' }, ICON[s.state] + ' '),
          s.stateLabel,
          graceUntil !== null && [' — ', h('span', { 'data-countdown': graceUntil }, duration(s.graceLeftSecs ?? 0)), ' left'],
        ),
        confirmButton(`drop-${s.endpoint}`, 'Drop', `Drop ${s.name} (endpoint ${s.endpoint})`, () => {
          void this.run(`Dropping ${s.name}`, () =>
            this.store.act('POST', `/admin/api/subscriptions/${encodeURIComponent(s.endpoint)}/drop`),
          );
        }),
      ),
      dl([
        ['Topic', h('code', { title: topic }, short(topic, 12))],
        ['Endpoint', h('code', {}, s.endpoint + '…')],
        ['Events', s.events.join(', ') || NONE],
        [s.connected ? 'Connected since' : 'Disconnected since', time(s.connected ? s.connectedSince : s.disconnectedSince)],
        ['Lease left', h('span', { 'data-countdown': fetched + s.leaseLeftSecs * 1000 }, duration(s.leaseLeftSecs))],
        ['Last ACK', ack],
        ['Queue', s.queueDepth === null ? NONE : `${s.queueDepth} of ${s.queueCapacity} waiting`],
      ]),
    );
  }
}

/** Counts every `[data-countdown]` down once a second, without a re-render. */
export function tickCountdowns(root: ParentNode): void {
  const now = Date.now();
  root.querySelectorAll<HTMLElement>('[data-countdown]').forEach((el) => {
    const until = Number(el.dataset.countdown);
    el.textContent = duration((until - now) / 1000);
  });
}

customElements.define('ls-apps', AppsView);
