// *Registrations*: the apps allowed to ask the hub for a token. Add one
// (its secret is shown once, here, with a copy button), revoke, rotate,
// and mark a client that never sends ACKs (issue 19). Browser apps (issue
// 16) are registered with redirect URIs instead: no secret; the list shows
// their origins and the clinician's consent, which can be withdrawn.

import { call } from '../api';
import { h, NONE, time, type Child } from '../dom';
import { confirmButton, FetchedView } from './base';

interface AppInfo {
  clientId: string;
  name: string;
  scopes: string[];
  topics: string[];
  createdAt: string;
  revoked: boolean;
  /** false: a known client that never sends ACKs; never dropped for one. */
  acknowledges: boolean;
}

/** What makes an app a browser app (SMART App Launch with PKCE). */
interface BrowserInfo {
  redirectUris: string[];
  launchUrl: string | null;
  /** IT approved it in the system file: no consent page, nothing to withdraw. */
  preapproved: boolean;
  /** The clinician's answer; null: not asked yet. */
  consent: 'approved' | 'denied' | null;
}

interface Registrations {
  apps: AppInfo[];
  browser: Record<string, BrowserInfo>;
}

/** The web origins of a browser app's URLs, as the hub allows them for CORS. */
function origins(b: BrowserInfo): string[] {
  const all = [...b.redirectUris, ...(b.launchUrl ? [b.launchUrl] : [])].flatMap((u) => {
    try {
      return [new URL(u).origin];
    } catch {
      return [];
    }
  });
  return [...new Set(all)];
}

function consentText(b: BrowserInfo): string {
  if (b.preapproved) return 'Approved by IT (system file)';
  if (b.consent === 'approved') return 'Approved';
  if (b.consent === 'denied') return 'Denied';
  return 'Not asked yet';
}

export class RegistrationsView extends FetchedView<Registrations> {
  readonly label = 'Registrations';
  protected readonly source = {
    path: '/admin/api/apps',
    what: 'the registrations',
    missing: 'This hub has no app registry.',
  };
  /** The secret just made, shown once: cleared when the view re-fetches. */
  private secret: { name: string; clientId: string; value: string } | null = null;
  /** The browser app just registered: it has no secret, so say so. */
  private registered: { name: string; clientId: string } | null = null;

  protected pick(answer: unknown): Registrations {
    const a = answer as { apps: AppInfo[]; browserApps?: Record<string, BrowserInfo> };
    return { apps: a.apps, browser: a.browserApps ?? {} };
  }

  protected content(): Child[] {
    return [
      this.form(),
      this.secret && this.secretBox(this.secret),
      this.registered &&
        h(
          'p',
          { class: 'registered', role: 'status' },
          h('strong', {}, `Browser app ${this.registered.name} registered`),
          ` (client id ${this.registered.clientId}). It has no secret: it signs in with PKCE, and the clinician is asked once.`,
        ),
      h('h2', {}, 'Registered apps'),
      this.fetched(({ apps, browser }) =>
        apps.length === 0
          ? h('p', { class: 'empty' }, 'No app is registered.')
          : h('ul', { class: 'app-list', 'aria-label': 'Registered apps' }, apps.map((a) => this.app(a, browser[a.clientId]))),
      ),
    ];
  }

  private form(): HTMLElement {
    const name = h('input', { id: 'reg-name', name: 'name', required: true, autocomplete: 'off', 'data-key': 'reg-name' });
    const scopes = h('input', { id: 'reg-scopes', name: 'scopes', value: 'fhircast/*.read fhircast/*.write', 'data-key': 'reg-scopes' });
    const topics = h('input', { id: 'reg-topics', name: 'topics', value: '$session', 'data-key': 'reg-topics' });
    const noAck = h('input', { id: 'reg-no-ack', name: 'no-ack', type: 'checkbox', 'data-key': 'reg-no-ack' });
    const redirects = h('textarea', { id: 'reg-redirects', name: 'redirect-uris', rows: 2, 'data-key': 'reg-redirects', 'aria-describedby': 'reg-browser-hint' });
    const launch = h('input', { id: 'reg-launch', name: 'launch-url', type: 'url', autocomplete: 'off', 'data-key': 'reg-launch' });
    const submit = async (e: Event) => {
      e.preventDefault();
      const redirectUris = redirects.value.split('\n').map((l) => l.trim()).filter(Boolean);
      const browserApp = redirectUris.length > 0;
      const created = (await this.run('Registering the app', () =>
        call<{ app: AppInfo; clientSecret: string | null }>('POST', '/admin/api/apps', {
          name: name.value,
          scopes: scopes.value,
          topics: topics.value.split(/[\s,]+/).filter(Boolean),
          acknowledges: !noAck.checked,
          ...(browserApp ? { redirectUris, launchUrl: launch.value.trim() || null } : {}),
        }),
      )) as { app: AppInfo; clientSecret: string | null } | undefined;
      if (created) {
        if (created.clientSecret) {
          this.secret = { name: created.app.name, clientId: created.app.clientId, value: created.clientSecret };
          this.registered = null;
        } else {
          this.registered = { name: created.app.name, clientId: created.app.clientId };
          this.secret = null;
        }
        await this.load();
        if (created.clientSecret) this.querySelector<HTMLElement>('.secret button')?.focus();
      }
    };
    return h(
      'form',
      { class: 'register', 'aria-labelledby': 'reg-title', onsubmit: (e: Event) => void submit(e) },
      h('h2', { id: 'reg-title' }, 'Add an app'),
      h('label', { for: 'reg-name' }, 'Name'),
      name,
      h('label', { for: 'reg-scopes' }, 'Scopes (space-separated, e.g. fhircast/*.read fhircast/Patient-open.write)'),
      scopes,
      h('label', { for: 'reg-topics' }, 'Topics (comma-separated; $session is this workstation’s session)'),
      topics,
      h('label', { for: 'reg-no-ack', class: 'check' }, noAck, ' Never sends ACKs (e.g. OHIF’s cast client): do not drop it for a missing ACK'),
      h('label', { for: 'reg-redirects' }, 'Redirect URIs, one per line (a browser app)'),
      h(
        'p',
        { class: 'hint', id: 'reg-browser-hint' },
        'Fill these in for an app that runs in a web browser: it gets no secret, signs in with PKCE, and the clinician approves it once. Leave empty for an app with a client secret.',
      ),
      redirects,
      h('label', { for: 'reg-launch' }, 'Launch URL (optional: the tray’s “Open app” opens it in the current context)'),
      launch,
      h('button', { type: 'submit', 'data-key': 'reg-submit' }, 'Register'),
    );
  }

  private secretBox(s: { name: string; clientId: string; value: string }): HTMLElement {
    const out = h('output', { class: 'secret-value', id: 'secret-value' }, s.value);
    const status = h('span', { 'aria-live': 'polite' });
    return h(
      'div',
      { class: 'secret', role: 'alert' },
      h('p', {}, h('strong', {}, `Client secret of ${s.name}`), ` (client id ${s.clientId}). Shown only now: copy it into the app.`),
      out,
      h(
        'div',
        { class: 'row' },
        h(
          'button',
          {
            type: 'button',
            'data-key': 'copy-secret',
            onclick: () => {
              navigator.clipboard.writeText(s.value).then(
                () => (status.textContent = 'Copied.'),
                () => {
                  getSelection()?.selectAllChildren(out);
                  status.textContent = 'Selected: press Ctrl+C to copy.';
                },
              );
            },
          },
          'Copy secret',
        ),
        h('button', { type: 'button', 'data-key': 'hide-secret', onclick: () => ((this.secret = null), this.update()) }, 'I have copied it'),
        status,
      ),
    );
  }

  private app(a: AppInfo, browser: BrowserInfo | undefined): HTMLElement {
    return h(
      'li',
      { class: `app ${a.revoked ? 'state-disconnected' : 'state-connected'}`, 'data-client': a.clientId },
      h(
        'div',
        { class: 'row' },
        h('h3', {}, a.name),
        h('span', { class: `badge ${a.revoked ? 'disconnected' : 'connected'}` }, a.revoked ? '○ Revoked' : '● Active'),
        !a.acknowledges && h('span', { class: 'badge', 'data-key': `no-ack-${a.clientId}` }, 'Does not acknowledge'),
        browser && h('span', { class: 'badge' }, 'Browser app'),
        !a.revoked &&
          !browser &&
          h(
            'button',
            {
              type: 'button',
              'data-key': `rotate-${a.clientId}`,
              'aria-label': `Rotate the secret of ${a.name}`,
              onclick: async () => {
                const r = (await this.run('Rotating the secret', () =>
                  call<{ clientSecret: string }>('POST', `/admin/api/apps/${encodeURIComponent(a.clientId)}/rotate`),
                )) as { clientSecret: string } | undefined;
                if (r) {
                  this.secret = { name: a.name, clientId: a.clientId, value: r.clientSecret };
                  this.update();
                }
              },
            },
            'Rotate secret',
          ),
        !a.revoked &&
          confirmButton(`revoke-${a.clientId}`, 'Revoke', `Revoke ${a.name}`, () => {
            void this.run('Revoking', () => call('DELETE', `/admin/api/apps/${encodeURIComponent(a.clientId)}`)).then(() => this.load());
          }),
      ),
      h(
        'dl',
        { class: 'facts' },
        h('div', {}, h('dt', {}, 'Client id'), h('dd', {}, h('code', {}, a.clientId))),
        h('div', {}, h('dt', {}, 'Scopes'), h('dd', {}, a.scopes.join(' ') || NONE)),
        h('div', {}, h('dt', {}, 'Topics'), h('dd', {}, a.topics.join(', ') || NONE)),
        h('div', {}, h('dt', {}, 'Registered'), h('dd', {}, time(a.createdAt))),
        browser && this.browserFacts(a, browser),
        h(
          'div',
          {},
          h('dt', {}, 'ACKs'),
          h(
            'dd',
            {},
            a.acknowledges ? 'Expected (dropped after the ACK timeout without one) ' : 'Not expected: never dropped for a missing ACK ',
            h(
              'button',
              {
                type: 'button',
                'data-key': `ack-${a.clientId}`,
                'aria-label': a.acknowledges ? `Mark ${a.name} as never sending ACKs` : `Expect ACKs from ${a.name}`,
                onclick: () => {
                  void this.run('Saving', () =>
                    call('PATCH', `/admin/api/apps/${encodeURIComponent(a.clientId)}`, { acknowledges: !a.acknowledges }),
                  ).then(() => this.load());
                },
              },
              a.acknowledges ? 'It never sends ACKs' : 'It sends ACKs',
            ),
          ),
        ),
      ),
    );
  }

  /** Origins, launch URL and consent of a browser app. */
  private browserFacts(a: AppInfo, b: BrowserInfo): Child[] {
    const withdrawable = !a.revoked && !b.preapproved && b.consent !== null;
    return [
      h('div', {}, h('dt', {}, 'Origins'), h('dd', { 'data-origins': a.clientId }, origins(b).join(', ') || NONE)),
      h('div', {}, h('dt', {}, 'Redirect URIs'), h('dd', {}, b.redirectUris.join(' '))),
      h('div', {}, h('dt', {}, 'Launch URL'), h('dd', {}, b.launchUrl ?? NONE)),
      h(
        'div',
        {},
        h('dt', {}, 'Consent'),
        h(
          'dd',
          {},
          h('span', { 'data-consent': a.clientId }, consentText(b)),
          ' ',
          withdrawable &&
            confirmButton(`withdraw-${a.clientId}`, 'Withdraw consent', `Withdraw the consent of ${a.name}`, () => {
              void this.run('Withdrawing the consent', () =>
                call('DELETE', `/admin/api/apps/${encodeURIComponent(a.clientId)}/consent`),
              ).then(() => this.load());
            }),
        ),
      ),
    ];
  }
}

customElements.define('ls-registrations', RegistrationsView);
