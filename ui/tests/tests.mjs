// The dashboard's browser tests, in order: each builds on the hub state the
// previous ones left (a topic with a patient, a report with content, apps
// that came and went). `t` holds the hub, the page and shared values.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { App, event, observation, patient, publish, reportUpdate, study, WAIT_MS } from './support.mjs';

const EVENTS = 'Patient-open,Patient-close,DiagnosticReport-open,DiagnosticReport-update,DiagnosticReport-close,syncerror';

async function signIn(t) {
  const { page, hub } = t;
  const response = await page.goto(hub.link);
  assert.equal(new URL(page.url()).pathname, '/ui/', 'the login redirects to /ui/');
  assert.ok(!page.url().includes('code='), `the code must leave the address bar: ${page.url()}`);
  assert.equal(response.status(), 200);
  await page.locator('.link.live').waitFor({ timeout: WAIT_MS });

  // The link works once: a second browser gets 401 and no cookie.
  const other = await t.browser.newContext();
  const again = await (await other.newPage()).goto(hub.link);
  assert.equal(again.status(), 401, 'a used link is refused');
  assert.match(await again.text(), /no longer works/);
  assert.equal((await other.cookies()).length, 0);
  await other.close();
  const cookies = await t.context.cookies();
  const session = cookies.find((c) => c.name === 'lockstep_admin');
  assert.ok(session, 'the session cookie is set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  // And the API refuses requests without a credential.
  assert.equal((await fetch(`${hub.base}/admin/api/state`)).status, 401);
}

async function patientOpenWithin500ms(t) {
  const { page, hub } = t;
  t.shared.topic = randomUUID();
  t.shared.ris = await App.join(hub.hubUrl, t.shared.topic, EVENTS, 'RIS (test)');
  await page.goto(`${hub.base}/ui/#now`);
  await page.locator(`section.topic h2 code[title="${t.shared.topic}"]`).waitFor({ timeout: WAIT_MS });
  await page.locator('.link.live').waitFor({ timeout: WAIT_MS });
  // Record, in the page, when the name first appears in the DOM.
  await page.evaluate((name) => {
    window.__seenAt = 0;
    const check = () => {
      if (!window.__seenAt && document.querySelector('ls-now')?.textContent?.includes(name)) {
        window.__seenAt = Date.now();
        observer.disconnect();
      }
    };
    const observer = new MutationObserver(check);
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
  }, 'LOVELACE, Ada');
  const t0 = Date.now();
  await publish(hub.hubUrl, event(t.shared.topic, 'Patient-open', [{ key: 'patient', resource: patient('p1', 'Lovelace', 'Ada') }]));
  const seenAt = await (await page.waitForFunction(() => window.__seenAt, null, { timeout: WAIT_MS })).jsonValue();
  const latency = seenAt - t0;
  assert.ok(latency <= 500, `the name appeared ${latency} ms after the publish (limit 500 ms)`);
  const card = page.locator('ls-now article.context.current .card.patient');
  await card.getByText('MRN-p1').waitFor({ timeout: WAIT_MS });
  const text = await card.innerText();
  for (const expected of ['LOVELACE, Ada', 'MRN-p1', 'urn:oid:1.2.36.146.595.217.0.1', '1815-12-10', 'Female']) {
    assert.ok(text.includes(expected), `the patient card shows ${expected}: ${text}`);
  }
  await t.shared.ris.nextEvent('Patient-open');
  return `publish to DOM: ${latency} ms`;
}

async function appConnectsAndDies(t) {
  const { page, hub } = t;
  const app = await App.join(hub.hubUrl, t.shared.topic, 'Patient-open,Patient-close', 'Dictation (test)');
  await page.goto(`${hub.base}/ui/#apps`);
  const row = page.locator('li.app[data-app="Dictation (test)"]');
  await row.and(page.locator('[data-state="connected"]')).waitFor({ timeout: WAIT_MS });
  assert.match(await row.locator('.badge').innerText(), /Connected/);
  app.kill();
  await row.and(page.locator('[data-state="grace"]')).waitFor({ timeout: WAIT_MS });
  assert.match(await row.locator('.badge').innerText(), /Lost, waiting for reconnect/);
  // The hub runs with a 3 s grace period: then the app is gone, with why.
  const gone = page.locator('li.gone[data-app="Dictation (test)"]');
  await gone.waitFor({ timeout: WAIT_MS * 2 });
  assert.match(await gone.innerText(), /connection lost/);
  await row.waitFor({ state: 'detached', timeout: WAIT_MS });
}

async function reportContentInOrder(t) {
  const { page, hub } = t;
  const topic = t.shared.topic;
  const ctx = [
    {
      key: 'report',
      resource: { resourceType: 'DiagnosticReport', id: 'r1', status: 'preliminary', subject: { reference: 'Patient/p1' } },
    },
    { key: 'patient', resource: patient('p1', 'Lovelace', 'Ada') },
    { key: 'study', resource: study('s1', 'p1') },
  ];
  t.shared.reportContext = ctx;
  const opened = await publish(hub.hubUrl, event(topic, 'DiagnosticReport-open', ctx));
  const v1 = opened.event.event['context.versionId'];
  const u1 = await publish(hub.hubUrl, reportUpdate(topic, 'r1', v1, [observation('obs-a', 'Pulmonary nodule', '6 mm')]));
  const v2 = u1.event.event['context.versionId'];
  const u2 = await publish(hub.hubUrl, reportUpdate(topic, 'r1', v2, [observation('obs-b', 'Pleural effusion', 'small')]));
  const v3 = u2.event.event['context.versionId'];
  t.shared.versions = [v1, v2, v3];
  await page.goto(`${hub.base}/ui/#now`);
  const current = page.locator('ls-now article.context.current');
  await current.locator('[data-resource="Observation/obs-b"]').waitFor({ timeout: WAIT_MS });
  const resources = await current.locator('li[data-resource]').evaluateAll((els) => els.map((e) => e.dataset.resource));
  assert.deepEqual(resources, ['Observation/obs-a', 'Observation/obs-b']);
  const versions = await current.locator('li[data-version]').evaluateAll((els) => els.map((e) => e.dataset.version));
  assert.deepEqual(versions, [v1, v2, v3], 'version history in order');
  const text = await current.innerText();
  for (const expected of ['Pulmonary nodule = 6 mm', 'Pleural effusion = small', 'ACC-s1', 'CT', 'CT chest with contrast', 'preliminary']) {
    assert.ok(text.includes(expected), `the current context shows ${expected}`);
  }
  // The Patient-open context is suspended under it.
  await page.locator('ls-now .suspended').getByText('Patient', { exact: false }).first().waitFor({ timeout: WAIT_MS });
  // The live log shows them newest first.
  await page.goto(`${hub.base}/ui/#events`);
  await page.locator('.log li.entry').first().waitFor({ timeout: WAIT_MS });
  const names = await page.locator('.log li.entry').evaluateAll((els) => els.slice(0, 3).map((e) => e.dataset.event));
  assert.deepEqual(names, ['DiagnosticReport-update', 'DiagnosticReport-update', 'DiagnosticReport-open']);
  for (const view of ['now', 'apps', 'events', 'settings']) {
    await page.goto(`${hub.base}/ui/#${view}`);
    await page.locator(`#view-${view} h1`).waitFor({ timeout: WAIT_MS });
    assert.ok(!(await page.locator('body').innerText()).includes('undefined'), `no "undefined" in ${view}`);
  }
}

/** Presses `key` until `selector` has focus (at most `max` times). */
async function focusBy(page, key, selector, max = 30) {
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press(key);
  }
  throw new Error(`${selector} never got focus with ${key}`);
}

async function keyboardOnly(t) {
  const { page, hub } = t;
  const helper = await App.join(hub.hubUrl, t.shared.topic, 'Patient-open', 'Viewer (test)');
  await page.goto(`${hub.base}/ui/#now`);
  await page.locator('#view-now h1').waitFor({ timeout: WAIT_MS });
  await focusBy(page, 'Tab', '#nav-apps');
  const outline = await page.evaluate(() => {
    const s = getComputedStyle(document.activeElement);
    return { style: s.outlineStyle, width: parseFloat(s.outlineWidth) };
  });
  assert.ok(outline.style !== 'none' && outline.width >= 2, `focus is visible: ${JSON.stringify(outline)}`);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#apps' && document.activeElement === document.querySelector('#view-apps h1'));
  assert.ok(await page.locator('#view-apps').isVisible());
  assert.ok(!(await page.locator('#view-now').isVisible()));
  // Drop an app with the keyboard: Enter, then Enter again to confirm.
  await page.locator('li.app[data-app="Viewer (test)"][data-state="connected"]').waitFor({ timeout: WAIT_MS });
  await focusBy(page, 'Tab', 'li.app[data-app="Viewer (test)"] button.danger');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Enter');
  await page.locator('li.gone[data-app="Viewer (test)"]').getByText('dropped by support').waitFor({ timeout: WAIT_MS });
  await helper.closed;
  // Back up to the nav and on to Events and Settings.
  await focusBy(page, 'Shift+Tab', '#nav-events');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#events' && document.activeElement === document.querySelector('#view-events h1'));
  await focusBy(page, 'Tab', '#filter-event');
  await page.keyboard.press('End'); // the last event name: SyncError
  await page.waitForFunction(() => {
    const shown = [...document.querySelectorAll('ls-events .log li.entry')].map((e) => e.dataset.event);
    return shown.length > 0 && shown.every((n) => n === 'SyncError');
  });
  await page.locator('#filter-event').press('Home'); // back to All
  await page.waitForFunction(() => document.querySelectorAll('ls-events .log li.entry[data-event="Patient-open"]').length > 0);
  await focusBy(page, 'Shift+Tab', '#nav-settings');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#settings');
  await page.locator('#view-settings tr[data-setting="ack_timeout_ms"]').waitFor({ timeout: WAIT_MS });
}

async function pauseAndResume(t) {
  const { page, hub } = t;
  const ris = t.shared.ris;
  await page.goto(`${hub.base}/ui/#now`);
  const button = page.locator('button[data-key="pause-delivery"]');
  await button.getByText('Pause sync').waitFor({ timeout: WAIT_MS });
  await button.click();
  await page.locator('.banner').getByText('Sync is paused').waitFor({ timeout: WAIT_MS });
  // Applied by the hub (the dashboard shows it) while apps are not told.
  await publish(hub.hubUrl, event(t.shared.topic, 'Patient-open', [{ key: 'patient', resource: patient('p2', 'Hopper', 'Grace') }]));
  await page.locator('ls-now article.context.current').getByText('HOPPER, Grace', { exact: true }).waitFor({ timeout: WAIT_MS });
  // Every app's row says it is paused (amber, in words).
  const risRow = page.locator('li.sync-row[data-app="RIS (test)"]');
  await risRow.and(page.locator('[data-sync="paused"].tone-warn')).waitFor({ timeout: WAIT_MS });
  assert.match(await risRow.locator('.badge').innerText(), /Sync paused/);
  await page.goto(`${hub.base}/ui/#events`);
  await page.locator('.log li.entry').first().getByText('held: delivery paused').waitFor({ timeout: WAIT_MS });
  await page.locator('button[data-key="pause-delivery"]').getByText('Resume sync').click();
  await page.locator('.banner').waitFor({ state: 'hidden', timeout: WAIT_MS });
  // On resume the app is sent the current context.
  const replayed = await ris.nextEvent('Patient-open');
  assert.equal(replayed.event.context[0].resource.id, 'p2');
  // Re-opening the suspended report resumes it with its content.
  await publish(hub.hubUrl, event(t.shared.topic, 'DiagnosticReport-open', t.shared.reportContext));
  await page.goto(`${hub.base}/ui/#now`);
  const current = page.locator('ls-now article.context.current');
  await current.locator('[data-resource="Observation/obs-b"]').waitFor({ timeout: WAIT_MS });
  const versions = await current.locator('li[data-version]').evaluateAll((els) => els.map((e) => e.dataset.version));
  assert.deepEqual(versions, t.shared.versions, 'resumed with its versions');
}

async function registrations(t) {
  const { page, hub } = t;
  await page.goto(`${hub.base}/ui/#registrations`);
  await page.locator('#view-registrations h1').waitFor({ timeout: WAIT_MS });
  const state = await Promise.race([
    page.locator('#view-registrations ul[aria-label="Registered apps"], #view-registrations .empty').first().waitFor({ timeout: WAIT_MS }).then(() => 'ok'),
  ]);
  assert.equal(state, 'ok');
  if (await page.getByText('This hub has no app registry').isVisible()) return 'no app registry in this hub build';
  await page.locator('#reg-name').fill('PACS (test)');
  await page.locator('#reg-name').press('Enter');
  const secret = page.locator('.secret-value');
  await secret.waitFor({ timeout: WAIT_MS });
  assert.ok((await secret.innerText()).length >= 20, 'a secret is shown');
  const row = page.locator('#view-registrations li.app', { hasText: 'PACS (test)' });
  await row.waitFor({ timeout: WAIT_MS });
  t.shared.secretShown = true;
  await page.locator('button[data-key="hide-secret"]').click();
  await row.getByRole('button', { name: /Rotate the secret/ }).click();
  await secret.waitFor({ timeout: WAIT_MS });
  await page.locator('button[data-key="hide-secret"]').click();
  const revoke = row.getByRole('button', { name: /Revoke/ });
  await revoke.click();
  await row.getByRole('button', { name: /Confirm: revoke/i }).click();
  await row.getByText('Revoked').waitFor({ timeout: WAIT_MS });
}

// Issue 16: a browser app is registered with redirect URIs (no secret),
// listed with its origins and consent; the clinician approves it on the
// hub's consent page; the dashboard withdraws that consent. Keyboard only.
async function browserAppRegistration(t) {
  const { page, hub } = t;
  // The app's own origin: a page that only has to load after the redirect.
  const server = createServer((req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<p>callback</p>'));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await browserAppFlow(t, `http://127.0.0.1:${server.address().port}`);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

async function browserAppFlow(t, appOrigin) {
  const { page, hub } = t;
  await page.goto(`${hub.base}/ui/#registrations`);
  await page.locator('#reg-name').waitFor({ timeout: WAIT_MS });
  await page.getByLabel(/Redirect URIs, one per line/).fill(`${appOrigin}/callback\n${appOrigin}/other-callback`);
  await page.getByLabel(/Launch URL/).fill(`${appOrigin}/launch`);
  await page.locator('#reg-name').fill('Web viewer (test)');
  await page.locator('#reg-name').press('Enter');
  await page.locator('.registered').getByText('It has no secret').waitFor({ timeout: WAIT_MS });
  assert.equal(await page.locator('.secret-value').count(), 0, 'no secret is shown for a browser app');
  const row = page.locator('#view-registrations li.app', { hasText: 'Web viewer (test)' });
  await row.waitFor({ timeout: WAIT_MS });
  const clientId = await row.getAttribute('data-client');
  await row.getByText('Browser app', { exact: true }).waitFor({ timeout: WAIT_MS });
  assert.equal(await row.locator(`[data-origins="${clientId}"]`).innerText(), appOrigin, 'one origin for both URIs');
  assert.equal(await row.locator(`[data-consent="${clientId}"]`).innerText(), 'Not asked yet');
  assert.equal(await row.getByRole('button', { name: /Rotate the secret/ }).count(), 0, 'no secret to rotate');
  assert.equal(await row.getByRole('button', { name: /Withdraw/ }).count(), 0, 'nothing to withdraw yet');

  // The clinician allows it on the hub's consent page (another browser, as the app's window).
  const other = await t.browser.newContext();
  const appPage = await other.newPage();
  const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: `${appOrigin}/callback`,
    scope: 'fhircast/*.read', state: 's1', aud: hub.base, code_challenge: 'A'.repeat(43), code_challenge_method: 'S256' });
  await appPage.goto(`${hub.base}/oauth/authorize?${q}`);
  await appPage.locator('main').getByText('Web viewer (test)').first().waitFor({ timeout: WAIT_MS });
  await appPage.keyboard.press('Enter'); // "Allow" has the focus
  await appPage.waitForURL(`${appOrigin}/callback?**`, { timeout: WAIT_MS });
  assert.ok(new URL(appPage.url()).searchParams.get('code'), 'a code came back');
  await other.close();

  // The dashboard shows the answer and withdraws it, asking first.
  await page.reload();
  await row.locator(`[data-consent="${clientId}"]`).getByText('Approved', { exact: true }).waitFor({ timeout: WAIT_MS });
  await row.getByRole('button', { name: `Withdraw the consent of Web viewer (test)` }).press('Enter');
  const confirm = row.getByRole('button', { name: 'Confirm: Withdraw the consent of Web viewer (test)' });
  await confirm.waitFor({ timeout: WAIT_MS });
  assert.equal((await (await t.context.request.get(`${hub.base}/admin/api/apps/${clientId}/consent`)).json()).consent, 'approved', 'the first press only asks');
  await confirm.press('Enter');
  await row.locator(`[data-consent="${clientId}"]`).getByText('Not asked yet').waitFor({ timeout: WAIT_MS });
  const consent = await (await t.context.request.get(`${hub.base}/admin/api/apps/${encodeURIComponent(clientId)}/consent`)).json();
  assert.equal(consent.consent, null, 'the hub forgot the answer');
}

async function settings(t) {
  const { page, hub } = t;
  const running = async () => (await (await t.context.request.get(`${hub.base}/admin/api/state`)).json()).settings;
  await page.goto(`${hub.base}/ui/#settings`);
  const input = page.locator('#set-ack_timeout_ms');
  await input.waitFor({ timeout: WAIT_MS });
  assert.equal(await input.inputValue(), '10000');
  // Labelled, and changed with the keyboard only: focus, type, Enter saves.
  assert.equal(await page.getByLabel('ACK timeout (ms)').getAttribute('id'), 'set-ack_timeout_ms');
  await focusBy(page, 'Tab', '#set-ack_timeout_ms', 60);
  await page.keyboard.press('Control+A');
  await page.keyboard.type('2500');
  await page.locator('#set-lease_default_secs').fill('3600');
  await page.locator('#set-ack_timeout_ms').press('Enter');
  await page.locator('p.saved').getByText('Applied now: ACK timeout. Applies after restart: Default lease.').waitFor({ timeout: WAIT_MS });
  const file = await readFile(hub.userFile, 'utf8');
  assert.match(file, /^ack_timeout_ms = 2500$/m, `the user file has the value: ${file}`);
  assert.match(file, /^lease_default_secs = 3600$/m, `the user file has the value: ${file}`);
  assert.equal((await running()).ackTimeoutMs.value, 2500, 'the hub uses the new ACK timeout at once');
  assert.equal((await running()).leaseDefaultSecs.value, 86400, 'the lease default waits for a restart');

  // Reload: both values are the saved ones; the lease waits for a restart.
  await page.reload();
  await input.waitFor({ timeout: WAIT_MS });
  assert.equal(await input.inputValue(), '2500');
  const row = page.locator('tr[data-setting="ack_timeout_ms"]');
  assert.match(await row.innerText(), /You \(your settings file\)/);
  assert.doesNotMatch(await row.innerText(), /Applies after restart/);
  assert.equal(await page.locator('#set-lease_default_secs').inputValue(), '3600');
  assert.match(await page.locator('tr[data-setting="lease_default_secs"]').innerText(), /Applies after restart/);

  // Reset: the user file forgets the key, the default applies again, at once.
  assert.equal(await page.locator('tr[data-setting="grace_period_ms"] button.reset').count(), 0, 'no reset for a value the user did not set');
  await row.getByRole('button', { name: 'Reset ACK timeout to the value of your IT or the default' }).click();
  await page.locator('p.saved').getByText('Saved. Applied now: ACK timeout.').waitFor({ timeout: WAIT_MS });
  assert.equal(await input.inputValue(), '10000');
  assert.match(await row.innerText(), /Default/);
  assert.equal(await row.locator('button.reset').count(), 0);
  assert.doesNotMatch(await readFile(hub.userFile, 'utf8'), /ack_timeout_ms/);
  assert.equal((await running()).ackTimeoutMs.value, 10000, 'the hub is back on the default at once');

  // IT's locked key: shown, read-only, labelled as managed; no input.
  const locked = page.locator('tr[data-setting="notifications"]');
  assert.equal(await locked.getAttribute('data-managed'), 'true');
  assert.equal(await locked.locator('input').count(), 0, 'no input for a managed key');
  assert.match(await locked.innerText(), /Managed by your IT/);
  assert.match(await locked.innerText(), /off/);
  // And the API refuses it (not through the page: a 403 there is expected).
  const res = await t.context.request.put(`${hub.base}/admin/api/settings`, { data: { notifications: true } });
  assert.equal(res.status(), 403);
  assert.deepEqual((await res.json()).locked, ['notifications']);
  // The flag the hub was started with is named as the source.
  assert.match(await page.locator('tr[data-setting="grace_period_ms"]').innerText(), /Command-line flag/);
}

/**
 * Issue 15, "is every app on the same patient?": four real apps on one
 * topic, one that ACKs, one silent, one that refuses, and one whose link
 * support breaks from the Now view. Each row says its state in words and
 * colour; the refusal stays in the SyncError banner until acknowledged;
 * Rejoin brings the broken link back in sync.
 */
async function nowViewSyncStates(t) {
  const { page, hub } = t;
  const topic = randomUUID();
  t.shared.syncTopic = topic;
  const events = 'Patient-open,Patient-close';
  const acks = await App.join(hub.hubUrl, topic, events, 'Viewer that ACKs (test)');
  const silent = await App.join(hub.hubUrl, topic, events, 'Silent dictation (test)', null);
  const refuses = await App.join(hub.hubUrl, topic, events, 'Refusing AI (test)', 409);
  const linked = await App.join(hub.hubUrl, topic, events, 'Reporting (test)');
  await page.goto(`${hub.base}/ui/#now`);
  const section = page.locator(`section.topic:has(h2 code[title="${topic}"])`);
  const row = (name) => section.locator(`li.sync-row[data-app="${name}"]`);
  // Before any context every connected app is in sync.
  await row('Viewer that ACKs (test)').and(page.locator('[data-sync="in-sync"]')).waitFor({ timeout: WAIT_MS });

  const open = event(topic, 'Patient-open', [{ key: 'patient', resource: patient('p9', 'Curie', 'Marie') }]);
  await publish(hub.hubUrl, open);
  await acks.nextEvent('Patient-open');
  await silent.nextEvent('Patient-open');
  await linked.nextEvent('Patient-open');
  await refuses.nextEvent('Patient-open').catch(() => undefined);
  // The summary is the hub's, the tray's format.
  await section.locator('article.context.current p.summary').getByText('CURIE, Marie · MRN MRN-p9').waitFor({ timeout: WAIT_MS });

  const expectRow = async (name, state, words, tone) => {
    const r = row(name);
    await r.and(page.locator(`[data-sync="${state}"]`)).waitFor({ timeout: WAIT_MS });
    assert.match(await r.locator('.badge').innerText(), words, `${name}: words, not colour alone`);
    assert.ok(await r.evaluate((el, c) => el.classList.contains(c), `tone-${tone}`), `${name} is ${tone}`);
    return r.innerText();
  };
  const acked = await expectRow('Viewer that ACKs (test)', 'in-sync', /In sync/, 'good');
  assert.match(acked, /Last acknowledged Patient-open version \S+ at \d\d:\d\d:\d\d\.\d{3} \S+/, `what and when, with a zone: ${acked}`);
  const behind = await expectRow('Silent dictation (test)', 'behind', /Waiting for its ACK/, 'warn');
  assert.match(behind, /Nothing acknowledged yet; 1 waiting for its ACK/);
  // The refusing app is reported (SyncError) and dropped by the hub: the
  // banner says so until someone acknowledges it.
  const alarm = page.locator('ls-now .sync-errors li.sync-error[data-app="Refusing AI (test)"]');
  await alarm.waitFor({ timeout: WAIT_MS });
  assert.match(await alarm.innerText(), /did not follow Patient-open/);
  t.shared.refusedRow = await row('Refusing AI (test)').count();
  if (t.shared.refusedRow) await expectRow('Refusing AI (test)', (await row('Refusing AI (test)').getAttribute('data-sync')) ?? '', /./, 'bad');

  // Break the link: it asks first, then the row says so (amber, words).
  const breakButton = row('Reporting (test)').getByRole('button', { name: /Break the link of Reporting/ });
  await breakButton.click();
  await row('Reporting (test)').getByRole('button', { name: /Confirm: Break the link/ }).click();
  await expectRow('Reporting (test)', 'paused', /Link broken by support/, 'warn');
  // docs/screenshots/now-sync-states.png: in sync, behind, link broken, and the refusal in the banner.
  await page.screenshot({ path: `${t.artifacts}/now-sync-states.png`, fullPage: true });
  const told = await linked.nextEvent('SyncError');
  assert.match(JSON.stringify(told), /until it is rejoined/);
  // A change it does not follow while unlinked, then Rejoin sends it the current context.
  const close = event(topic, 'Patient-close', [{ key: 'patient', resource: patient('p9', 'Curie', 'Marie') }]);
  await publish(hub.hubUrl, close);
  await acks.nextEvent('Patient-close');
  const reopen = event(topic, 'Patient-open', [{ key: 'patient', resource: patient('p10', 'Meitner', 'Lise') }]);
  await publish(hub.hubUrl, reopen);
  await acks.nextEvent('Patient-open');
  await row('Reporting (test)').getByRole('button', { name: /Rejoin Reporting/ }).click();
  assert.equal((await linked.nextEvent('Patient-close')).id, close.id);
  assert.equal((await linked.nextEvent('Patient-open')).id, reopen.id);
  await expectRow('Reporting (test)', 'in-sync', /In sync/, 'good');

  // Acknowledge the SyncError: the banner goes, for good.
  await alarm.getByRole('button', { name: /Acknowledge/ }).click();
  await alarm.waitFor({ state: 'detached', timeout: WAIT_MS });
  t.shared.syncApps = [acks, silent, refuses, linked];
  return t.shared.refusedRow ? 'refusing app kept its row' : 'refusing app dropped by the hub (D5); shown in the banner';
}

/** The audit export from the Settings view: CSV or NDJSON, a range of days. */
async function auditExport(t) {
  const { page, hub } = t;
  await page.goto(`${hub.base}/ui/#settings`);
  const link = page.locator('#audit-link');
  await link.waitFor({ timeout: WAIT_MS });
  const fetchLink = async () => {
    const href = await link.getAttribute('href');
    const res = await t.context.request.get(new URL(href, hub.base).toString());
    assert.equal(res.status(), 200, href);
    return { href, type: res.headers()['content-type'], body: await res.text() };
  };
  const csv = await fetchLink();
  assert.match(csv.href, /format=csv/);
  assert.match(csv.type, /text\/csv/);
  assert.match(csv.body, /break the link of Reporting \(test\)/, 'the support action is audited');
  await page.locator('#audit-format').selectOption('ndjson');
  const today = await page.evaluate(() => {
    const d = new Date();
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  });
  await page.locator('#audit-since').fill(today);
  await page.locator('#audit-until').fill(today);
  const nd = await fetchLink();
  assert.match(nd.href, /format=ndjson&since=.*&until=/);
  assert.match(nd.type, /ndjson/);
  const lines = nd.body.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => JSON.stringify(l).includes('rejoin Reporting (test)')), 'today\'s range has the rejoin');
  // A range in the past has none of today's actions.
  await page.locator('#audit-since').fill('2001-01-01');
  await page.locator('#audit-until').fill('2001-01-02');
  assert.doesNotMatch((await fetchLink()).body, /Reporting \(test\)/);
  // A range that ends before it starts is refused in the page.
  await page.locator('#audit-since').fill('2001-01-03');
  await page.locator('#view-settings .audit-export .error').getByText('The range ends before it starts.').waitFor({ timeout: WAIT_MS });
  assert.equal(await link.getAttribute('href'), null);
  // Where the logs are (a bare hub: standard error).
  assert.match(await page.locator('#view-settings section.logs').innerText(), /standard error/);
  for (const app of t.shared.syncApps ?? []) app.close();
}

export const TESTS = [
  ['the one-time link signs in once, sets an HttpOnly SameSite=Strict cookie, and leaves the URL', signIn],
  ['Patient-open published by a script appears in Now within 500 ms', patientOpenWithin500ms],
  ['an app shows as connected, then lost, then gone when its socket is killed', appConnectsAndDies],
  ['a DiagnosticReport open and two content updates appear in order', reportContentInOrder],
  ['keyboard only: between views, drop an app, filters', keyboardOnly],
  ['pause holds delivery; resume sends the current context', pauseAndResume],
  ['registrations: add (secret shown once), rotate, revoke', registrations],
  ['registrations: a browser app (redirect URIs, no secret) is listed with its origin and consent; consent withdrawn', browserAppRegistration],
  ['Now view: per app, in sync / behind / refused / link broken, in words and colour; SyncError acknowledged; break link and rejoin', nowViewSyncStates],
  ['audit export from the dashboard: CSV, NDJSON, a date range', auditExport],
  ['settings: change the ACK timeout (live) and the lease (after restart), save, reload: persisted; Reset goes back to the default; an IT-locked key is read-only', settings],
];
