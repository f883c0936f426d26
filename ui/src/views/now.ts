// *Now*: the SyncErrors nobody acknowledged yet; per topic, one row per
// app with its sync state (is it on this context, and if not since when),
// the current context as a clinician reads it (patient, study, report,
// shared content with its versions), the raw JSON on demand, and the
// suspended contexts under it. Patient, study and report lines are the
// hub's `summary`, the same text the tray shows.

import type { ContextItem, OpenContext, Sub, SyncErrorItem, SyncState, Topic } from '../api';
import { dl, h, NONE, rawJson, short, text, time, type Child } from '../dom';
import * as fhir from '../fhir';
import { confirmButton, View } from './base';

export class NowView extends View {
  readonly label = 'Now';

  protected content(): Child[] {
    const model = this.store.model;
    if (!model) return [h('p', {}, 'Loading…')];
    const errors = this.syncErrors(model.syncErrors ?? []);
    if (model.topics.length === 0) {
      return [errors, h('p', { class: 'empty' }, 'No app is subscribed yet: there is no session to show.')];
    }
    return [errors, ...model.topics.map((t) => this.topic(t))];
  }

  /** SyncErrors stay here until someone acknowledges them (issue 15). */
  private syncErrors(errors: SyncErrorItem[]): Child {
    if (errors.length === 0) return null;
    return h(
      'section',
      { class: 'sync-errors', role: 'alert', 'aria-label': 'Unacknowledged SyncErrors' },
      h(
        'header',
        { class: 'row' },
        h('h2', {}, `${errors.length} app${errors.length === 1 ? '' : 's'} failed to follow (SyncError)`),
        errors.length > 1 &&
          h(
            'button',
            {
              type: 'button',
              'data-key': 'ack-all',
              onclick: () => void this.run('Acknowledging', () => this.store.act('POST', '/admin/api/sync-errors/acknowledge')),
            },
            'Acknowledge all',
          ),
      ),
      h(
        'ul',
        { class: 'plain' },
        errors.map((e) =>
          h(
            'li',
            { class: 'sync-error', 'data-seq': e.seq, 'data-app': e.app },
            h('strong', {}, e.app),
            ` did not follow ${e.event}: ${e.reason} `,
            h('span', { class: 'muted' }, `at ${time(e.when)}, topic ${short(e.topic, 12)} `),
            h(
              'button',
              {
                type: 'button',
                'data-key': `ack-${e.seq}`,
                'aria-label': `Acknowledge: ${e.app} did not follow ${e.event}`,
                onclick: () => void this.run('Acknowledging', () => this.store.act('POST', `/admin/api/sync-errors/${e.seq}/acknowledge`)),
              },
              'Acknowledge',
            ),
          ),
        ),
      ),
    );
  }

  /** One row per app: its sync state in words and colour, what it last acknowledged, and when. */
  private apps(t: Topic): HTMLElement {
    const inSync = t.subscriptions.filter((s) => s.sync?.state === 'in-sync').length;
    return h(
      'section',
      { class: 'sync', 'aria-label': 'Apps on this topic' },
      h('h3', {}, `Apps: ${inSync} of ${t.subscriptions.length} in sync`),
      t.subscriptions.length === 0
        ? h('p', { class: 'empty' }, 'No app follows this topic.')
        : h('ul', { class: 'plain sync-rows' }, t.subscriptions.map((s) => this.appRow(s))),
    );
  }

  private appRow(s: Sub): HTMLElement {
    const sync = s.sync;
    const acked = sync?.acked;
    const broken = sync?.state === 'paused' && sync.label.startsWith('Link broken');
    const path = `/admin/api/subscriptions/${encodeURIComponent(s.endpoint)}`;
    return h(
      'li',
      { class: `sync-row tone-${tone(sync?.state)}`, 'data-app': s.name, 'data-sync': sync?.state ?? 'unknown' },
      h('span', { class: 'app-name' }, s.name),
      h('span', { class: `badge tone-${tone(sync?.state)}` }, sync?.label ?? s.stateLabel),
      h(
        'span',
        { class: 'acked' },
        acked
          ? ['Last acknowledged ', h('code', {}, acked.event), acked.versionId ? ` version ${short(acked.versionId)}` : '', ` at ${time(acked.at)}`]
          : 'Nothing acknowledged yet',
        sync && sync.pending > 0 ? `; ${sync.pending} waiting for its ACK` : '',
      ),
      broken
        ? h(
            'button',
            {
              type: 'button',
              'data-key': `rejoin-${s.endpoint}`,
              'aria-label': `Rejoin ${s.name}: send it the current context`,
              onclick: () => void this.run('Rejoining', () => this.store.act('POST', `${path}/rejoin`)),
            },
            'Rejoin',
          )
        : confirmButton(`break-${s.endpoint}`, 'Break link', `Break the link of ${s.name}: it follows no context change until rejoined`, () => {
            void this.run('Breaking the link', () => this.store.act('POST', `${path}/break-link`));
          }),
    );
  }

  private topic(t: Topic): HTMLElement {
    const id = `topic-${t.topic}`;
    const current = t.contexts.find((c) => c.current);
    const suspended = t.contexts.filter((c) => !c.current);
    const connected = t.subscriptions.filter((s) => s.connected).length;
    return h(
      'section',
      { class: 'topic', 'aria-labelledby': id },
      h(
        'header',
        { class: 'row' },
        h('h2', { id }, t.session ? 'Session ' : 'Topic ', h('code', { title: t.topic }, short(t.topic, 12))),
        h('span', { class: 'muted' }, `${connected} of ${t.subscriptions.length} apps connected`),
        t.contexts.length > 0 &&
          confirmButton(`close-all-${t.topic}`, 'Close all contexts', `Close all contexts of topic ${short(t.topic, 12)}`, () => {
            void this.run('Closing the contexts', () =>
              this.store.act('POST', `/admin/api/topics/${encodeURIComponent(t.topic)}/close-all`),
            );
          }),
      ),
      this.apps(t),
      current
        ? this.context(t.topic, current, 'Current context')
        : h('p', { class: 'empty' }, 'No current context: apps show no patient.'),
      suspended.length > 0 &&
        h(
          'section',
          { class: 'suspended', 'aria-label': 'Suspended contexts' },
          h('h3', {}, `Suspended contexts (${suspended.length})`),
          h('ul', { class: 'plain' }, suspended.map((c) => h('li', {}, this.context(t.topic, c, 'Suspended')))),
        ),
    );
  }

  private context(topic: string, c: OpenContext, title: string): HTMLElement {
    const ctx: ContextItem[] = c.open?.event?.context ?? [];
    const patient = fhir.item(ctx, 'patient');
    const study = fhir.item(ctx, 'study');
    const report = fhir.item(ctx, 'report');
    const encounter = fhir.item(ctx, 'encounter');
    const key = `${topic}-${c.anchorType}-${c.anchorId}`;
    const anchor = `${c.anchorType}/${c.anchorId}`;
    return h(
      'article',
      { class: c.current ? 'context current' : 'context', 'aria-label': `${title}: ${anchor}` },
      h('h3', {}, `${title}: `, h('span', { class: 'anchor' }, c.anchorType), ' ', h('code', {}, c.anchorId)),
      c.summary && h('p', { class: 'summary' }, c.summary.text),
      h(
        'div',
        { class: 'cards' },
        this.patient(patient, ctx, c),
        study && this.study(study, c),
        report && this.report(report, c),
        encounter && h('div', { class: 'card' }, h('h4', {}, 'Encounter'), dl([['Id', text(encounter.id)], ['Class', fhir.codingDisplay(encounter.class) || NONE]])),
      ),
      this.shared(key, c),
      rawJson(`raw-${key}`, `Raw JSON of ${c.open?.event?.['hub.event'] ?? 'the open event'} and its content`, {
        open: c.open,
        versionId: c.versionId,
        content: c.content,
      }),
    );
  }

  private patient(p: fhir.FhirLike | null, ctx: ContextItem[], c: OpenContext): HTMLElement {
    if (!p) {
      return h('div', { class: 'card' }, h('h4', {}, 'Patient'), dl([['Reference', fhir.referenceOf(ctx, 'patient')]]));
    }
    const ids = fhir.identifiers(p.identifier);
    const mrn = fhir.mrn(p.identifier);
    return h(
      'div',
      { class: 'card patient' },
      h('h4', {}, 'Patient'),
      h('p', { class: 'name' }, text(c.summary?.patient)),
      dl([
        [mrn?.label ?? 'MRN', mrn ? h('span', {}, mrn.value, ' ', h('span', { class: 'system' }, mrn.system)) : NONE],
        ['Birth date', fhir.birthDate(p.birthDate)],
        ['Sex', fhir.gender(p.gender)],
        ['Resource id', text(p.id)],
      ]),
      ids.length > 1 &&
        h(
          'details',
          { 'data-key': `ids-${p.id}` },
          h('summary', {}, `All identifiers (${ids.length})`),
          h('ul', {}, ids.map((i) => h('li', {}, `${i.label}: ${i.value} `, h('span', { class: 'system' }, i.system)))),
        ),
    );
  }

  private study(s: fhir.FhirLike, c: OpenContext): HTMLElement {
    return h(
      'div',
      { class: 'card' },
      h('h4', {}, 'Study'),
      h('p', { class: 'name' }, text(c.summary?.study)),
      dl([
        ['Accession', fhir.accession(s)],
        ['Modality', fhir.modalities(s)],
        ['Started', text(s.started)],
        ['Study UID', text(fhir.studyUid(s))],
      ]),
    );
  }

  private report(r: fhir.FhirLike, c: OpenContext): HTMLElement {
    return h(
      'div',
      { class: 'card' },
      h('h4', {}, 'Report'),
      h('p', { class: 'name' }, text(c.summary?.report)),
      dl([
        ['Report id', text(r.id)],
        ['Status', text(r.status)],
        ['Type', fhir.concept(r.code)],
      ]),
    );
  }

  private shared(key: string, c: OpenContext): HTMLElement {
    const entries = c.content?.entry ?? [];
    return h(
      'div',
      { class: 'shared' },
      h('h4', {}, `Shared content (${entries.length})`),
      entries.length === 0
        ? h('p', { class: 'muted' }, 'Nothing shared yet.')
        : h(
            'ol',
            { class: 'content-list', 'aria-label': 'Shared content' },
            entries.map((e) => {
              const r = e.resource ?? {};
              return h(
                'li',
                { 'data-resource': `${r.resourceType}/${r.id}` },
                h('span', { class: 'rtype' }, text(r.resourceType)),
                ' ',
                h('code', {}, text(r.id)),
                ' — ',
                fhir.summary(r),
              );
            }),
          ),
      h(
        'details',
        { 'data-key': `history-${key}`, class: 'history' },
        h('summary', {}, `Version history (${c.history?.length ?? 0})`),
        h(
          'ol',
          { class: 'versions', 'aria-label': 'Version history' },
          (c.history ?? []).map((v) =>
            h(
              'li',
              { 'data-version': v.versionId },
              h('code', { title: v.versionId }, short(v.versionId)),
              ` ${v.eventName} at ${time(v.timestamp)}`,
              h('span', { class: 'muted' }, ` event ${short(v.eventId)}`, v.priorVersionId ? `, after ${short(v.priorVersionId)}` : ''),
            ),
          ),
        ),
      ),
    );
  }
}

/** Green when on the context, amber when it may catch up, red when it will not without help. */
function tone(state: SyncState | undefined): 'good' | 'warn' | 'bad' {
  switch (state) {
    case 'in-sync':
      return 'good';
    case 'refused':
    case 'unresponsive':
      return 'bad';
    default:
      return 'warn';
  }
}

customElements.define('ls-now', NowView);
