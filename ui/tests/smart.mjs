// Browser test of SMART App Launch (issue 16): a small web app served from
// another origin (its own port) signs in to a hub of its own through the
// standard flow in real Chromium: discovery → authorize (PKCE S256) →
// the hub's consent page, answered by keyboard → code → token → subscribe →
// WebSocket → a context change → its ACK.
//
// Run by run.mjs; alone: `node ui/tests/smart.mjs` (needs the built
// lockstep-hub and Chromium, as run.mjs does).

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { WAIT_MS, event, patient, publish, startHub, withTimeout } from './support.mjs';

// The test app: one page for /launch and /callback. All it knows is the
// hub's base URL (`iss`) and its client id; the rest comes from discovery
// and the token response. It reports progress in #status and keeps every
// step in window.__steps for the test to read.
const APP_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>Test web viewer</title></head>
<body><h1>Test web viewer</h1><p id="status">starting</p><script type="module">
const CLIENT_ID = 'web-viewer';
const steps = (window.__steps = []);
const say = (s) => { steps.push(s); document.getElementById('status').textContent = s; };
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
const params = new URLSearchParams(location.search);
try {
  if (location.pathname === '/launch') {
    const iss = params.get('iss');
    const smart = await (await fetch(iss + '/.well-known/smart-configuration')).json();
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
    const state = crypto.randomUUID();
    sessionStorage.setItem('pkce', JSON.stringify({ verifier, state, iss, token: smart.token_endpoint }));
    const q = new URLSearchParams({ response_type: 'code', client_id: CLIENT_ID, redirect_uri: location.origin + '/callback',
      scope: 'openid fhircast/*.read fhircast/*.write', state, aud: iss, code_challenge: challenge, code_challenge_method: 'S256' });
    say('authorizing');
    location.assign(smart.authorization_endpoint + '?' + q);
  } else {
    const saved = JSON.parse(sessionStorage.getItem('pkce'));
    if (params.get('state') !== saved.state) throw new Error('state mismatch');
    const res = await fetch(saved.token, { method: 'POST', body: new URLSearchParams({ grant_type: 'authorization_code',
      code: params.get('code'), redirect_uri: location.origin + '/callback', client_id: CLIENT_ID, code_verifier: saved.verifier }) });
    const token = await res.json();
    if (!res.ok) throw new Error('token: ' + JSON.stringify(token));
    window.__token = token;
    say('token');
    const topic = token.topic; // what OHIF's cast client reads
    const sub = await fetch(token['hub.url'], { method: 'POST', headers: { authorization: 'Bearer ' + token.access_token },
      body: new URLSearchParams({ 'hub.channel.type': 'websocket', 'hub.mode': 'subscribe', 'hub.topic': topic, 'hub.events': 'Patient-open' }) });
    const endpoint = (await sub.json())['hub.channel.endpoint'];
    const ws = new WebSocket(endpoint);
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg['hub.mode'] === 'subscribe') say('subscribed');
      if (msg.event && msg.event['hub.event'] === 'Patient-open') {
        ws.send(JSON.stringify({ id: msg.id, status: 200 }));
        window.__event = msg;
        say('acknowledged ' + msg.event.context[0].resource.id);
      }
    };
  }
} catch (e) { say('error: ' + e.message); }
</script></body></html>`;

async function serveTestApp() {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/launch' || path === '/callback') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(APP_HTML);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

export async function smartLaunch(t) {
  const app = await serveTestApp();
  // A hub of its own, on which IT registered the web app (not pre-approved).
  const hub = await startHub([], `[[apps]]\nclient_id = "web-viewer"\nname = "Test web viewer"\nscopes = "fhircast/*.*"\n` +
    `redirect_uris = ["${app.origin}/callback"]\nlaunch_url = "${app.origin}/launch"\n`);
  const context = await t.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${app.origin}/launch?iss=${encodeURIComponent(hub.base)}`);
    // The hub's consent page: the app, its origin, its scopes.
    await page.waitForURL(`${hub.base}/oauth/authorize?**`, { timeout: WAIT_MS });
    const text = await page.locator('main').innerText();
    for (const expected of ['Test web viewer', app.origin, 'fhircast/*.read', 'fhircast/*.write']) {
      assert.ok(text.includes(expected), `the consent page shows ${expected}: ${text}`);
    }
    if (t.artifacts) await page.screenshot({ path: path.join(t.artifacts, 'consent-light.png'), fullPage: true });
    // Keyboard only: "Allow" has the focus; Enter submits it.
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Allow');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${app.origin}/callback?**`, { timeout: WAIT_MS }).catch(async (e) => { throw new Error(`${e.message}\n${await page.locator("body").innerText()}\n${hub.stderr().slice(-2000)}`); });
    await page.waitForFunction(() => window.__steps?.includes('subscribed') || document.getElementById('status')?.textContent.startsWith('error'), null, { timeout: WAIT_MS });
    assert.equal(await page.locator('#status').innerText(), 'subscribed');
    const token = await page.evaluate(() => window.__token);
    assert.ok(token.refresh_token, 'a refresh token');
    assert.equal(token.topic, token['hub.topic']);

    const patientId = `p-${randomUUID().slice(0, 8)}`;
    await publish(hub.hubUrl, event(token.topic, 'Patient-open', [{ key: 'patient', resource: patient(patientId, 'Hopper', 'Grace') }]));
    await page.waitForFunction((id) => document.getElementById('status')?.textContent === `acknowledged ${id}`, patientId, { timeout: WAIT_MS });

    // The hub got the ACK: the dashboard's model shows it as the app's last.
    const admin = await context.newPage();
    await admin.goto(hub.link);
    const lastAck = await admin.waitForFunction(async () => {
      const state = await (await fetch('/admin/api/state')).json();
      const subs = (state.topics || []).flatMap((topic) => topic.subscriptions || []);
      return subs.map((sub) => sub.lastAck).find((ack) => ack && ack.count > 0) || false;
    }, null, { timeout: WAIT_MS, polling: 100 });
    assert.equal((await lastAck.jsonValue()).status, 200);

    // A page of another origin may not call the hub.
    const foreign = await withTimeout(fetch(`${hub.base}/oauth/token`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } }), WAIT_MS, 'preflight');
    assert.equal(foreign.status, 403);
    return `consent, code, token, event ${patientId} ACKed`;
  } finally {
    await context.close();
    await hub.stop();
    await app.close();
  }
}

// Standalone: `node ui/tests/smart.mjs`.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  let code = 0;
  try {
    const note = await smartLaunch({ browser });
    console.log(`ok 1 - SMART launch of a web app from another origin # ${note}`);
  } catch (e) {
    code = 1;
    console.log(`not ok 1 - SMART launch of a web app from another origin\n${String(e?.stack || e).replace(/^/gm, '  # ')}`);
  }
  await browser.close();
  process.exit(code);
}
