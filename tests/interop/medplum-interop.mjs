// Interop test: drive the Lockstep hub with the real @medplum/core FHIRcast client (Node 20).
//
//   npm ci --prefix tests/interop && node tests/interop/medplum-interop.mjs
//
// Environment:
//   LOCKSTEP_HUB_BIN            hub binary (default: <repo>/target/debug/lockstep-hub)
//   LOCKSTEP_INTEROP_VERBOSE=1  forward the hub's stderr live (otherwise shown only on failure)
//
// Exit code 0 when every step passed, 1 otherwise.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

// @medplum/core must be loaded after the WebSocket global exists (Node 20), so both are
// dynamic imports: static imports would be hoisted above the preload.
await import('./ws-global.mjs');
const { MedplumClient, OperationOutcomeError } = await import('@medplum/core');

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..', '..');
const HUB_BIN = process.env.LOCKSTEP_HUB_BIN || path.join(REPO_ROOT, 'target', 'debug', 'lockstep-hub');
const VERBOSE = process.env.LOCKSTEP_INTEROP_VERBOSE === '1';

const WAIT_MS = 5000; // every wait on an event
const READY_MS = 15000; // hub start-up (debug build, fresh data dir)
const QUIET_MS = 1500; // bounded wait for something that must NOT happen
const WATCHDOG_MS = 120000; // whole run

const EVENTS = [
  'Patient-open',
  'Patient-close',
  'DiagnosticReport-open',
  'DiagnosticReport-update',
  'DiagnosticReport-select',
  'DiagnosticReport-close',
  'syncerror',
];

// ---------------------------------------------------------------------------------------
// Small helpers

let stepNo = 0;
function pass(text) {
  stepNo += 1;
  console.log(`ok ${stepNo} - ${text}`);
}

/** A failure of the hub against the contract / FHIRcast spec (as opposed to a script bug). */
class HubDeviation extends Error {
  constructor(message) {
    super(message);
    this.name = 'HubDeviation';
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new HubDeviation(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** FIFO of items with a single waiter; `next` waits on the actual arrival, with a timeout. */
class Inbox {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiter = undefined;
  }

  push(item) {
    if (this.waiter) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve(item);
    } else {
      this.items.push(item);
    }
  }

  next(what, ms = WAIT_MS) {
    if (this.items.length > 0) {
      return Promise.resolve(this.items.shift());
    }
    assert.equal(this.waiter, undefined, `script bug: two concurrent waits on ${this.name}`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new HubDeviation(`timed out after ${ms} ms waiting for ${what} (${this.name})`));
      }, ms);
      this.waiter = {
        resolve: (item) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
    });
  }

  /** Bounded wait for an item that must not arrive. Resolves with it if one does. */
  async nothingWithin(ms) {
    if (this.items.length > 0) {
      return this.items.shift();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(undefined);
      }, ms);
      this.waiter = {
        resolve: (item) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
    });
  }

  assertEmpty(what) {
    if (this.items.length > 0) {
      throw new HubDeviation(`unexpected ${this.name} item(s) ${what}: ${JSON.stringify(this.items)}`);
    }
  }
}

function expectDeviation(cond, message) {
  if (!cond) {
    throw new HubDeviation(message);
  }
}

const j = (x) => JSON.stringify(x);

// ---------------------------------------------------------------------------------------
// The hub process

let hub; // { proc, url, port, dataDir, log: string[], exited: Promise<{code, signal}> }

async function startHub() {
  if (!existsSync(HUB_BIN)) {
    throw new Error(`hub binary not found at ${HUB_BIN} (build it with \`cargo build -p lockstep-hub\` or set LOCKSTEP_HUB_BIN)`);
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'lockstep-interop-'));
  // Auth is on, as installed: register the interop app the way IT would
  // (`lockstep-hub apps add`), keeping secrets in a 0600 file in the temp dir.
  const added = execFileSync(
    HUB_BIN,
    ['apps', 'add', 'Medplum interop', '--scopes', 'fhircast/*.read fhircast/*.write', '--data-dir', dataDir, '--secret-store', 'file'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }
  );
  const clientId = /client_id:\s+(\S+)/.exec(added)?.[1];
  const clientSecret = /client_secret:\s+(\S+)/.exec(added)?.[1];
  expectDeviation(clientId && clientSecret, `\`lockstep-hub apps add\` printed no client_id/client_secret: ${j(added)}`);
  const args = ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--secret-store', 'file', '--grace-period-ms', '2000'];
  const proc = spawn(HUB_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  hub = { proc, dataDir, log, exited, url: undefined, port: undefined, clientId, clientSecret };

  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    log.push(chunk);
    if (VERBOSE) {
      process.stderr.write(chunk);
    }
  });

  const ready = new Promise((resolve, reject) => {
    let buffered = '';
    let found = false;
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk) => {
      if (found) {
        log.push(`[stdout] ${chunk}`);
        return;
      }
      buffered += chunk;
      const m = /ready at (http:\/\/\S+)/.exec(buffered);
      if (m) {
        found = true;
        resolve(m[1]);
      }
    });
    proc.on('error', (err) => reject(new Error(`could not start ${HUB_BIN}: ${err.message}`)));
    exited.then(({ code, signal }) => {
      if (!found) {
        reject(new HubDeviation(`hub exited (code ${code}, signal ${signal}) before printing its ready line; stdout so far: ${j(buffered)}`));
      }
    });
  });

  const url = await withTimeout(ready, READY_MS, "the hub's `ready at http://...` line");
  const m = /^http:\/\/127\.0\.0\.1:(\d+)\/fhircast\/STU3$/.exec(url);
  expectDeviation(m, `ready line URL ${j(url)} is not http://127.0.0.1:PORT/fhircast/STU3`);
  hub.url = url;
  hub.port = Number(m[1]);
  return hub;
}

async function stopHub() {
  hub.proc.kill('SIGTERM');
  const { code, signal } = await withTimeout(hub.exited, WAIT_MS, 'the hub to exit after SIGTERM');
  expectDeviation(code === 0 && signal === null, `hub exited with code ${code}, signal ${signal} after SIGTERM (expected exit code 0)`);
}

async function cleanup() {
  if (hub && hub.proc.exitCode === null && hub.proc.signalCode === null) {
    hub.proc.kill('SIGKILL');
    await Promise.race([hub.exited, new Promise((r) => setTimeout(r, 2000))]);
  }
  if (hub?.dataDir) {
    await rm(hub.dataDir, { recursive: true, force: true }).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// A fetch that records what the Medplum client sent and the status it got back, so we can
// learn the event ids the client generates and check status codes it does not expose.

const http = [];
async function recordingFetch(url, init = {}) {
  const entry = { method: init.method ?? 'GET', url: String(url), body: init.body, status: undefined, contentType: undefined };
  http.push(entry);
  const res = await fetch(url, init);
  entry.status = res.status;
  entry.contentType = res.headers.get('content-type');
  return res;
}
function lastRequest() {
  return http[http.length - 1];
}

// ---------------------------------------------------------------------------------------
// The test

async function main() {
  await startHub();
  const { port } = hub;
  pass(`hub started: ${hub.url}`);

  const client = new MedplumClient({
    baseUrl: `http://127.0.0.1:${port}/`,
    maxRetries: 0,
    fetch: recordingFetch,
    onUnauthenticated: () => {
      throw new HubDeviation('hub answered 401 to a request carrying a valid token');
    },
  });
  assert.equal(client.fhircastHubUrl.toString(), hub.url, 'script bug: client hub URL differs from the ready line');

  // --- 0. A real token from the hub's token endpoint (SMART client_credentials) ---------
  const anonymous = await fetch(`${hub.url}/${randomUUID()}`);
  expectDeviation(anonymous.status === 401, `get-context without a token: expected 401, got ${anonymous.status}`);
  const tokenRes = await fetch(`http://127.0.0.1:${port}/oauth/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${hub.clientId}:${hub.clientSecret}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials',
  });
  expectDeviation(tokenRes.status === 200, `POST /oauth/token: expected 200, got ${tokenRes.status}`);
  const token = await tokenRes.json();
  expectDeviation(token.token_type === 'Bearer' && token.access_token, `token response ${j(token)} has no bearer token`);
  expectDeviation(token['hub.url'] === hub.url, `token response hub.url ${j(token['hub.url'])} is not ${hub.url}`);
  expectDeviation(typeof token['hub.topic'] === 'string' && token['hub.topic'], `token response has no hub.topic: ${j(token)}`);
  client.setAccessToken(token.access_token);
  // The SMART launch context names the session topic, as an EHR launch would.
  const topic = token['hub.topic'];
  pass(`token from /oauth/token (scope ${token.scope}); topic from hub.topic`);

  // --- 1. Subscribe --------------------------------------------------------------------
  const sub = await client.fhircastSubscribe(topic, EVENTS);
  const subReq = lastRequest();
  expectDeviation(subReq.status === 202, `subscribe: expected HTTP 202, got ${subReq.status}`);
  expectDeviation(/json/.test(subReq.contentType ?? ''), `subscribe: content-type ${j(subReq.contentType)} is not JSON`);
  expectDeviation(
    typeof sub.endpoint === 'string' && sub.endpoint.startsWith(`ws://127.0.0.1:${port}/`),
    `subscribe: hub.channel.endpoint ${j(sub.endpoint)} does not start with ws://127.0.0.1:${port}/`
  );
  pass(`subscribe -> 202, endpoint ${sub.endpoint}`);

  // --- 2. Confirmation frame, seen on a raw socket (the Medplum client swallows it) ------
  {
    const raw = new WebSocket(sub.endpoint);
    const frames = new Inbox('raw socket frames');
    raw.on('message', (data) => frames.push(JSON.parse(data.toString())));
    const closed = new Promise((resolve) => raw.on('close', resolve));
    raw.on('error', () => {});
    const confirmation = await frames.next('the subscription confirmation frame on a raw socket');
    expectDeviation(
      j(Object.keys(confirmation).sort()) === j(['hub.events', 'hub.lease_seconds', 'hub.mode', 'hub.topic']),
      `confirmation frame keys are not exactly hub.mode/hub.topic/hub.events/hub.lease_seconds: ${j(confirmation)}`
    );
    expectDeviation(confirmation['hub.mode'] === 'subscribe', `confirmation hub.mode: ${j(confirmation)}`);
    expectDeviation(confirmation['hub.topic'] === topic, `confirmation hub.topic is not ${topic}: ${j(confirmation)}`);
    expectDeviation(
      typeof confirmation['hub.events'] === 'string' &&
        j(confirmation['hub.events'].split(',').sort()) === j([...EVENTS].sort()),
      `confirmation hub.events is not the comma-separated subscribed list: ${j(confirmation)}`
    );
    expectDeviation(
      Number.isInteger(confirmation['hub.lease_seconds']) && confirmation['hub.lease_seconds'] > 0,
      `confirmation hub.lease_seconds is not a positive integer: ${j(confirmation)}`
    );
    raw.close(1000);
    await withTimeout(closed, WAIT_MS, 'the raw socket to close');
    frames.assertEmpty('on the raw socket with no open context (no replay expected)');
    pass(`raw socket got confirmation ${j(confirmation)}`);
  }

  // --- 3. Connect the Medplum client -----------------------------------------------------
  const lifecycle = new Inbox('connection lifecycle');
  const inbox = new Inbox('Medplum messages');
  const conn = client.fhircastConnect(sub, { WebSocket, minReconnectionDelay: 200, maxReconnectionDelay: 500 });
  conn.addEventListener('connect', () => lifecycle.push('connect'));
  conn.addEventListener('disconnect', () => lifecycle.push('disconnect'));
  conn.addEventListener('message', (e) => inbox.push(e.payload));
  async function expectLifecycle(type, what) {
    const got = await lifecycle.next(what);
    expectDeviation(got === type, `expected \`${type}\` on the Medplum connection but got \`${got}\` (waiting for ${what})`);
  }
  await expectLifecycle('connect', 'the first `connect` of the Medplum client');
  pass('fhircastConnect -> connect');

  /**
   * Publish with the real client and return the broadcast the client receives. The next
   * message the client sees must be this event (same id): that also proves nothing else
   * (e.g. a rejected event) was broadcast in between.
   */
  async function publish(event, context, versionId) {
    const before = http.length;
    let resp;
    try {
      resp = await client.fhircastPublish(topic, event, context, versionId);
    } catch (err) {
      if (http.length > before && lastRequest().status >= 400) {
        throw new HubDeviation(`publish ${event} rejected with HTTP ${lastRequest().status}: ${err.message}; request ${lastRequest().body}`);
      }
      throw err; // client-side validation or network error
    }
    const req = lastRequest();
    assert.equal(req.method, 'POST', 'script bug: last request is not the publish');
    const sent = JSON.parse(req.body);
    expectDeviation(req.status === 202, `publish ${event}: expected HTTP 202, got ${req.status}`);
    expectDeviation(resp?.success === true, `publish ${event}: response lacks success:true: ${j(resp)}`);
    const msg = await inbox.next(`the broadcast of ${event} (id ${sent.id})`);
    expectDeviation(
      msg?.id === sent.id,
      `publish ${event}: the next message the client received is not this event (id ${sent.id}): ${j(msg)}`
    );
    expectDeviation(msg.event?.['hub.topic']?.toLowerCase() === topic, `broadcast hub.topic mismatch: ${j(msg)}`);
    expectDeviation(msg.event?.['hub.event']?.toLowerCase() === event.toLowerCase(), `broadcast hub.event mismatch: ${j(msg)}`);
    expectDeviation(Array.isArray(msg.event?.context), `broadcast has no context array: ${j(msg)}`);
    // The publish response carries the event as broadcast (accept the bare event or the envelope).
    const respEvent = resp.event?.event ?? resp.event;
    expectDeviation(
      respEvent?.['context.versionId'] === msg.event['context.versionId'],
      `publish ${event}: response context.versionId ${j(respEvent?.['context.versionId'])} != broadcast ${j(msg.event['context.versionId'])}`
    );
    return { msg, sent, resp };
  }

  /** Publish that the hub must reject with `status`; returns the error. */
  async function publishRejected(event, context, versionId, status, textRe) {
    let err;
    try {
      await client.fhircastPublish(topic, event, context, versionId);
    } catch (e) {
      err = e;
    }
    const req = lastRequest();
    expectDeviation(err, `publish ${event} was accepted (HTTP ${req.status}) but must be rejected with ${status}`);
    expectDeviation(req.status === status, `publish ${event}: expected HTTP ${status}, got ${req.status} (${err.message})`);
    expectDeviation(
      err instanceof OperationOutcomeError,
      `publish ${event}: rejection is not an OperationOutcome (client threw ${err?.constructor?.name}: ${err.message})`
    );
    expectDeviation(textRe.test(err.message), `publish ${event}: rejection text ${j(err.message)} does not match ${textRe}`);
    return err;
  }

  async function getContext() {
    const ctx = await client.fhircastGetContext(topic);
    const req = lastRequest();
    expectDeviation(req.status === 200, `get-context: expected HTTP 200, got ${req.status}`);
    return ctx;
  }

  async function expectEmptyContext(when) {
    const ctx = await getContext();
    expectDeviation(
      j(ctx) === j({ 'context.type': '', context: [] }),
      `get-context ${when}: expected {"context.type":"","context":[]}, got ${j(ctx)}`
    );
  }

  function contentBundle(ctx, when) {
    const entry = ctx.context?.find((c) => c.key === 'content');
    expectDeviation(entry, `get-context ${when}: no \`content\` entry: ${j(ctx)}`);
    const bundle = entry.resource;
    expectDeviation(
      bundle?.resourceType === 'Bundle' && bundle.type === 'collection',
      `get-context ${when}: content is not a collection Bundle: ${j(entry)}`
    );
    return bundle;
  }
  const contentIds = (bundle) => (bundle.entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`).sort();

  async function expectReportContext(reportId, versionId, content, when) {
    const ctx = await getContext();
    expectDeviation(ctx['context.type'] === 'DiagnosticReport', `get-context ${when}: context.type is not DiagnosticReport: ${j(ctx)}`);
    expectDeviation(ctx['context.versionId'] === versionId, `get-context ${when}: versionId ${j(ctx['context.versionId'])}, expected ${versionId}`);
    const report = ctx.context.find((c) => c.key === 'report');
    expectDeviation(report?.resource?.id === reportId, `get-context ${when}: report is not ${reportId}: ${j(ctx)}`);
    const ids = contentIds(contentBundle(ctx, when));
    expectDeviation(j(ids) === j([...content].sort()), `get-context ${when}: content ${j(ids)}, expected ${j(content)}`);
    return ctx;
  }

  const patient = (id) => ({ key: 'patient', resource: { resourceType: 'Patient', id } });
  const report = (id, patientId) => [
    { key: 'report', resource: { resourceType: 'DiagnosticReport', id, status: 'preliminary', code: { text: 'CT chest' }, subject: { reference: `Patient/${patientId}` } } },
    patient(patientId),
  ];
  const reportRef = (id, patientId) => [
    { key: 'report', reference: { reference: `DiagnosticReport/${id}` } },
    { key: 'patient', reference: { reference: `Patient/${patientId}` } },
  ];
  const putObservation = (obsId, text) => ({
    key: 'updates',
    resource: {
      resourceType: 'Bundle',
      id: randomUUID(),
      type: 'transaction',
      entry: [
        {
          request: { method: 'PUT', url: `Observation/${obsId}` },
          resource: { resourceType: 'Observation', id: obsId, status: 'preliminary', code: { text: 'Finding' }, valueString: text },
        },
      ],
    },
  });
  const versionOf = (msg) => msg.event['context.versionId'];

  // --- 4. Patient-open -----------------------------------------------------------------
  {
    const { msg } = await publish('Patient-open', patient('p1'));
    const v = versionOf(msg);
    expectDeviation(typeof v === 'string' && v.length > 0, `Patient-open broadcast has no context.versionId: ${j(msg)}`);
    const ctx = await getContext();
    expectDeviation(ctx['context.type'] === 'Patient', `get-context after Patient-open: context.type ${j(ctx['context.type'])}`);
    expectDeviation(ctx['context.versionId'] === v, `get-context after Patient-open: versionId ${j(ctx['context.versionId'])} != broadcast ${v}`);
    expectDeviation(
      ctx.context?.find((c) => c.key === 'patient')?.resource?.id === 'p1',
      `get-context after Patient-open: no patient p1: ${j(ctx)}`
    );
    pass(`Patient-open relayed with versionId ${v}; get-context matches`);
  }

  // --- 5. Patient-close ----------------------------------------------------------------
  {
    const { msg } = await publish('Patient-close', patient('p1'));
    expectDeviation(!('context.versionId' in msg.event), `Patient-close broadcast carries a context.versionId: ${j(msg)}`);
    await expectEmptyContext('after Patient-close');
    pass('Patient-close relayed (no versionId); get-context empty');
  }

  // --- 6. DiagnosticReport-open / -update (content sharing) ----------------------------
  let v1, v2, v3;
  {
    const { msg } = await publish('DiagnosticReport-open', report('r1', 'p1'));
    v1 = versionOf(msg);
    expectDeviation(typeof v1 === 'string' && v1.length > 0, `DiagnosticReport-open broadcast has no context.versionId: ${j(msg)}`);
    await expectReportContext('r1', v1, [], 'after DiagnosticReport-open r1');
    pass(`DiagnosticReport-open r1 -> v1 ${v1}; get-context has an empty content Bundle`);
  }
  {
    const { msg } = await publish('DiagnosticReport-update', [...reportRef('r1', 'p1'), putObservation('o1', 'nodule')], v1);
    expectDeviation(msg.event['context.priorVersionId'] === v1, `update broadcast context.priorVersionId ${j(msg.event['context.priorVersionId'])} != v1 ${v1}`);
    v2 = versionOf(msg);
    expectDeviation(typeof v2 === 'string' && v2 !== v1, `update broadcast context.versionId ${j(v2)} is missing or equal to v1`);
    await expectReportContext('r1', v2, ['Observation/o1'], 'after DiagnosticReport-update');
    pass(`DiagnosticReport-update (PUT Observation/o1, v1) -> priorVersionId v1, versionId v2 ${v2}; content has o1`);
  }

  // --- 7. Stale versionId rejected, nothing broadcast ----------------------------------
  {
    await publishRejected('DiagnosticReport-update', [...reportRef('r1', 'p1'), putObservation('o-stale', 'stale')], v1, 400, /version/i);
    await expectReportContext('r1', v2, ['Observation/o1'], 'after the rejected stale update');
    // The next message the client sees must be this later event, not the rejected one.
    const { msg } = await publish('DiagnosticReport-update', [...reportRef('r1', 'p1'), putObservation('o2', 'effusion')], v2);
    expectDeviation(msg.event['context.priorVersionId'] === v2, `update broadcast priorVersionId ${j(msg.event['context.priorVersionId'])} != v2`);
    v3 = versionOf(msg);
    expectDeviation(typeof v3 === 'string' && v3 !== v2 && v3 !== v1, `update broadcast versionId ${j(v3)} not new`);
    await expectReportContext('r1', v3, ['Observation/o1', 'Observation/o2'], 'after the second update');
    pass(`stale update (v1) rejected 400 mentioning version, not broadcast; next update v2 -> v3 ${v3}`);
  }

  // --- 8. Suspend and resume -----------------------------------------------------------
  let w1;
  {
    const { msg } = await publish('DiagnosticReport-open', report('r2', 'p2'));
    w1 = versionOf(msg);
    expectDeviation(typeof w1 === 'string' && w1.length > 0, `DiagnosticReport-open r2 has no versionId: ${j(msg)}`);
    await expectReportContext('r2', w1, [], 'after opening r2 over r1');
    const resumed = await publish('DiagnosticReport-open', report('r1', 'p1'));
    expectDeviation(
      versionOf(resumed.msg) === v3,
      `re-open of suspended r1: broadcast versionId ${j(versionOf(resumed.msg))}, expected r1's last versionId ${v3}`
    );
    await expectReportContext('r1', v3, ['Observation/o1', 'Observation/o2'], 'after re-opening r1');
    pass(`open r2 (${w1}) suspends r1; re-open r1 resumes with v3 and content o1,o2`);

    const closed = await publish('DiagnosticReport-close', report('r1', 'p1'));
    expectDeviation(!('context.versionId' in closed.msg.event), `DiagnosticReport-close broadcast carries a versionId: ${j(closed.msg)}`);
    await expectEmptyContext('after closing r1');
    pass('DiagnosticReport-close r1 relayed (no versionId); get-context empty');
  }

  // --- 9. Events on a context that is not open are rejected with 409 --------------------
  {
    await publishRejected('DiagnosticReport-update', [...reportRef('r1', 'p1'), putObservation('o-late', 'late')], v3, 409, /./);
    pass('update of closed r1 rejected with 409 OperationOutcome');
  }

  // --- 10. Select and syncerror ------------------------------------------------------------
  {
    const resumed = await publish('DiagnosticReport-open', report('r2', 'p2')); // also proves no broadcast of the 409
    expectDeviation(versionOf(resumed.msg) === w1, `re-open of suspended r2: versionId ${j(versionOf(resumed.msg))}, expected ${w1}`);
    const upd = await publish('DiagnosticReport-update', [...reportRef('r2', 'p2'), putObservation('o3', 'mass')], w1);
    const w2 = versionOf(upd.msg);
    await expectReportContext('r2', w2, ['Observation/o3'], 'after updating r2');

    const sel = await publish('DiagnosticReport-select', [...reportRef('r2', 'p2'), { key: 'select', reference: { reference: 'Observation/o3' } }]);
    expectDeviation(
      sel.msg.event.context.some((c) => c.key === 'select' && c.reference?.reference === 'Observation/o3'),
      `DiagnosticReport-select broadcast lost the select reference: ${j(sel.msg)}`
    );
    await expectReportContext('r2', w2, ['Observation/o3'], 'after select (select must not change content)');
    pass('DiagnosticReport-select relayed with its select reference');

    const oo = {
      resourceType: 'OperationOutcome',
      id: randomUUID(),
      issue: [{ severity: 'warning', code: 'processing', diagnostics: 'interop test', details: { text: 'interop test sync error' } }],
    };
    const se = await publish('syncerror', [{ key: 'operationoutcome', resource: oo }]);
    expectDeviation(
      se.msg.event.context.some((c) => c.key === 'operationoutcome' && c.resource?.id === oo.id),
      `syncerror broadcast lost its OperationOutcome: ${j(se.msg)}`
    );
    pass('syncerror relayed with its OperationOutcome');

    await publish('DiagnosticReport-close', report('r2', 'p2'));
    await expectEmptyContext('after closing r2');
  }

  // --- 11. Reconnect to the same endpoint: current context replayed -----------------------
  {
    const { msg: opened, sent } = await publish('Patient-open', patient('p3'));
    lifecycle.assertEmpty('before reconnect');
    // FhircastConnection keeps its ReconnectingWebSocket in the (TS-private) `websocket`
    // field; reconnect() closes the socket with 1000 and reopens the same URL.
    assert.equal(typeof conn.websocket?.reconnect, 'function', 'script bug: conn.websocket.reconnect() not found');
    conn.websocket.reconnect();
    await expectLifecycle('disconnect', '`disconnect` after reconnect()');
    await expectLifecycle('connect', '`connect` after reconnect()');
    expectDeviation(conn.websocket.url === sub.endpoint, `script bug? reconnected to ${conn.websocket.url}`);
    const replay = await inbox.next('the replay of the current Patient-open after reconnect');
    expectDeviation(
      replay?.id === sent.id && replay.event?.['hub.event']?.toLowerCase() === 'patient-open',
      `after reconnect the first message is not the replayed Patient-open (id ${sent.id}): ${j(replay)}`
    );
    expectDeviation(
      versionOf(replay) === versionOf(opened),
      `replayed Patient-open versionId ${j(versionOf(replay))} != original ${versionOf(opened)}`
    );
    pass(`client reconnect -> disconnect, connect, current Patient-open replayed (same id ${sent.id})`);

    // A second socket on the same endpoint takes over: it gets the confirmation and the
    // replay, and the hub closes the client's socket, which then reconnects by itself (and
    // takes over again, so the hub closes the raw socket).
    const raw = new WebSocket(sub.endpoint);
    const frames = new Inbox('raw takeover socket frames');
    raw.on('message', (data) => frames.push(JSON.parse(data.toString())));
    raw.on('error', () => {});
    const rawClosed = new Promise((resolve) => raw.on('close', (code) => resolve(code)));
    const conf = await frames.next('the confirmation on the takeover socket');
    expectDeviation(conf['hub.mode'] === 'subscribe' && !('event' in conf), `takeover socket: first frame is not the confirmation: ${j(conf)}`);
    const rawReplay = await frames.next('the replay on the takeover socket');
    expectDeviation(rawReplay?.id === sent.id, `takeover socket: replay is not the Patient-open ${sent.id}: ${j(rawReplay)}`);
    await expectLifecycle('disconnect', 'the hub to close the older (Medplum) socket on takeover');
    await expectLifecycle('connect', 'the Medplum client to reconnect after takeover');
    const replay2 = await inbox.next('the replay to the Medplum client after it took the endpoint back');
    expectDeviation(replay2?.id === sent.id, `after takeover reconnect: first message is not the replayed Patient-open: ${j(replay2)}`);
    const code = await withTimeout(rawClosed, WAIT_MS, 'the hub to close the raw socket when the client took the endpoint back');
    pass(`second socket takes over (confirmation + replay); client auto-reconnects, raw socket closed (code ${code})`);

    await publish('Patient-close', patient('p3'));
    await expectEmptyContext('after Patient-close p3');
  }

  // --- 12. Unsubscribe: denied, disconnected for good ------------------------------------
  {
    inbox.assertEmpty('before unsubscribe');
    lifecycle.assertEmpty('before unsubscribe');
    await client.fhircastUnsubscribe(sub);
    const req = lastRequest();
    expectDeviation(req.status === 202, `unsubscribe: expected HTTP 202, got ${req.status}`);
    await expectLifecycle('disconnect', '`disconnect` after unsubscribe (denied frame + close)');
    const late = await lifecycle.nothingWithin(QUIET_MS);
    expectDeviation(late === undefined, `after unsubscribe the client saw \`${late}\` within ${QUIET_MS} ms: it did not get the denied frame, or the endpoint is still live`);
    expectDeviation(conn.websocket.readyState === WebSocket.CLOSED, `socket readyState ${conn.websocket.readyState} after unsubscribe`);
    expectDeviation(conn.websocket.shouldReconnect === false, 'client still wants to reconnect after unsubscribe: denied frame not received');
    inbox.assertEmpty('after unsubscribe');
    pass(`unsubscribe -> 202, client denied and disconnected, no reconnect within ${QUIET_MS} ms`);
  }

  // --- 12b. The session outlives its apps (issue 19): with nobody subscribed, the
  // client publishes first (the RIS of the morning); subscribing again, it is sent that
  // patient.
  {
    await client.fhircastPublish(topic, 'Patient-open', patient('p9'));
    const req = lastRequest();
    const sent = JSON.parse(req.body);
    expectDeviation(req.status === 202, `publish with no subscriber: expected HTTP 202 (never "unknown topic"), got ${req.status}`);
    const again = await client.fhircastSubscribe(topic, EVENTS);
    const late = new Inbox('messages after resubscribing');
    const conn2 = client.fhircastConnect(again, { WebSocket, minReconnectionDelay: 200, maxReconnectionDelay: 500 });
    conn2.addEventListener('message', (e) => late.push(e.payload));
    const replayed = await late.next('the replay of the patient published with nobody subscribed');
    expectDeviation(replayed?.id === sent.id, `resubscribed client was not sent the patient published meanwhile: ${j(replayed)}`);
    pass(`publish with no app subscribed -> 202; a client that subscribes later is sent that patient (${sent.id})`);
    conn2.disconnect();
  }

  // --- 13. Stop the hub ---------------------------------------------------------------
  conn.disconnect();
  await stopHub();
  pass('hub stopped by SIGTERM with exit code 0');
}

// ---------------------------------------------------------------------------------------

const watchdog = setTimeout(() => {
  console.error(`FAIL: the whole run exceeded ${WATCHDOG_MS} ms`);
  dumpHubLog();
  cleanup().finally(() => process.exit(1));
}, WATCHDOG_MS);
watchdog.unref();

function dumpHubLog() {
  if (hub && !VERBOSE) {
    const text = hub.log.join('');
    console.error(`----- hub log (stderr) -----\n${text.length > 20000 ? `...${text.slice(-20000)}` : text}\n----- end of hub log -----`);
  }
}

let exitCode = 0;
try {
  await main();
  console.log(`PASS: ${stepNo} steps, @medplum/core FHIRcast client against ${HUB_BIN}`);
} catch (err) {
  exitCode = 1;
  const kind = err instanceof HubDeviation || err instanceof OperationOutcomeError ? 'HUB DEVIATION' : 'FAIL';
  console.error(`not ok ${stepNo + 1} - ${kind}: ${err?.message ?? err}`);
  if (!(err instanceof HubDeviation)) {
    console.error(err?.stack ?? err);
  }
  if (http.length > 0) {
    const e = lastRequest();
    console.error(`last HTTP request: ${e.method} ${e.url} -> ${e.status}${e.body ? ` body ${String(e.body).slice(0, 500)}` : ''}`);
  }
  dumpHubLog();
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
process.exit(exitCode);
