// *Now*: per topic, the current context as a clinician reads it (patient,
// study, report, shared content with its versions), the raw JSON on
// demand, and the suspended contexts under it.

import type { ContextItem, OpenContext, Topic } from '../api';
import { dl, h, NONE, rawJson, short, text, time, type Child } from '../dom';
import * as fhir from '../fhir';
import { confirmButton, View } from './base';

export class NowView extends View {
  readonly label = 'Now';

  protected content(): Child[] {
    const model = this.store.model;
    if (!model) return [h('p', {}, 'Loading…')];
    if (model.topics.length === 0) {
      return [h('p', { class: 'empty' }, 'No app is subscribed yet: there is no session to show.')];
    }
    return model.topics.map((t) => this.topic(t));
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
        h('h2', { id }, 'Topic ', h('code', { title: t.topic }, short(t.topic, 12))),
        h('span', { class: 'muted' }, `${connected} of ${t.subscriptions.length} apps connected`),
        t.contexts.length > 0 &&
          confirmButton(`close-all-${t.topic}`, 'Close all contexts', `Close all contexts of topic ${short(t.topic, 12)}`, () => {
            void this.run('Closing the contexts', () =>
              this.store.act('POST', `/admin/api/topics/${encodeURIComponent(t.topic)}/close-all`),
            );
          }),
      ),
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
      h(
        'div',
        { class: 'cards' },
        this.patient(patient, ctx),
        study && this.study(study),
        report && this.report(report),
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

  private patient(p: fhir.FhirLike | null, ctx: ContextItem[]): HTMLElement {
    if (!p) {
      return h('div', { class: 'card' }, h('h4', {}, 'Patient'), dl([['Reference', fhir.referenceOf(ctx, 'patient')]]));
    }
    const ids = fhir.identifiers(p.identifier);
    const mrn = fhir.mrn(p.identifier);
    return h(
      'div',
      { class: 'card patient' },
      h('h4', {}, 'Patient'),
      h('p', { class: 'name' }, fhir.humanName(p.name)),
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

  private study(s: fhir.FhirLike): HTMLElement {
    return h(
      'div',
      { class: 'card' },
      h('h4', {}, 'Study'),
      h('p', { class: 'name' }, text(s.description)),
      dl([
        ['Accession', fhir.accession(s)],
        ['Modality', fhir.modalities(s)],
        ['Started', text(s.started)],
        ['Study UID', text(fhir.studyUid(s))],
      ]),
    );
  }

  private report(r: fhir.FhirLike): HTMLElement {
    return h(
      'div',
      { class: 'card' },
      h('h4', {}, 'Report'),
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

customElements.define('ls-now', NowView);
