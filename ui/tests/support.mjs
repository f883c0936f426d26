// Test support: the real lockstep-hub binary, real FHIRcast apps (HTTP
// subscribe + a `ws` WebSocket that ACKs), and event builders. Every wait
// is on an event, bounded by a timeout; nothing sleeps.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
export const WAIT_MS = 5000;

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts `lockstep-hub --listen 127.0.0.1:0 --no-auth` on a fresh data
 * folder and reads the ready line and the one-time dashboard link. Its
 * settings files are in that folder too (never the developer's own):
 * `system.toml` holds `systemSettings`, `user.toml` what the dashboard saves.
 */
export async function startHub(extraArgs = [], systemSettings = '') {
  const bin = process.env.LOCKSTEP_HUB_BIN || path.join(REPO_ROOT, 'target', 'debug', 'lockstep-hub');
  if (!existsSync(bin)) throw new Error(`${bin} not found: run cargo build -p lockstep-hub first`);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'lockstep-ui-'));
  const systemFile = path.join(dataDir, 'system.toml');
  const userFile = path.join(dataDir, 'user.toml');
  if (systemSettings) await writeFile(systemFile, systemSettings);
  const files = ['--system-config', systemFile, '--config', userFile];
  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--no-auth', ...files, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (process.env.LOCKSTEP_UI_VERBOSE === '1') process.stderr.write(d);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const lines = [];
  const ready = new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      const hubUrl = lines.map((l) => l.match(/^Lockstep hub ready at (\S+)/)?.[1]).find(Boolean);
      const link = lines.map((l) => l.match(/^Dashboard \(one-time link\): (\S+)/)?.[1]).find(Boolean);
      if (hubUrl && link) resolve({ hubUrl, link });
    });
    exited.then(({ code }) => reject(new Error(`hub exited with ${code} before it was ready:\n${stderr}`)));
  });
  const { hubUrl, link } = await withTimeout(ready, 15000, 'the hub to print its ready line and link');
  const base = new URL(hubUrl).origin;
  return {
    base,
    hubUrl,
    link,
    userFile,
    stderr: () => stderr,
    async stop() {
      child.kill('SIGTERM');
      await withTimeout(exited, WAIT_MS, 'the hub to stop');
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A subscriber app: subscribes over HTTP, connects, and answers every event
 * with `ack` (200: follows; 409: refuses; null: stays silent).
 */
export class App {
  static async join(hubUrl, topic, events, name, ack = 200) {
    const body = new URLSearchParams({
      'hub.channel.type': 'websocket',
      'hub.mode': 'subscribe',
      'hub.topic': topic,
      'hub.events': events,
      'subscriber.name': name,
    });
    const res = await fetch(hubUrl, { method: 'POST', body });
    if (res.status !== 202) throw new Error(`subscribe refused: ${res.status} ${await res.text()}`);
    const endpoint = (await res.json())['hub.channel.endpoint'];
    const app = new App(endpoint, ack);
    const confirmation = await app.next();
    if (confirmation['hub.mode'] !== 'subscribe') throw new Error(`expected a confirmation, got ${JSON.stringify(confirmation)}`);
    return app;
  }

  constructor(endpoint, ack = 200) {
    this.ack = ack;
    this.frames = [];
    this.waiters = [];
    this.ws = new WebSocket(endpoint);
    this.closed = new Promise((resolve) => this.ws.once('close', resolve));
    this.ws.on('message', (data) => {
      const frame = JSON.parse(String(data));
      if (frame.event && frame.id && this.ack !== null) this.ws.send(JSON.stringify({ id: frame.id, status: this.ack }));
      const w = this.waiters.shift();
      if (w) w(frame);
      else this.frames.push(frame);
    });
  }

  /** The next text frame. */
  next() {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    return withTimeout(new Promise((r) => this.waiters.push(r)), WAIT_MS, 'a frame from the hub');
  }

  /** The next event named `name` (other frames skipped). */
  async nextEvent(name) {
    for (;;) {
      const f = await this.next();
      if (f.event?.['hub.event']?.toLowerCase() === name.toLowerCase()) return f;
    }
  }

  /** Gone without a closing handshake, as a crashed app. */
  kill() {
    this.ws.terminate();
  }

  close() {
    this.ws.close(1000);
  }
}

export async function publish(hubUrl, message) {
  const res = await fetch(hubUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(message),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`publish refused with ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

export function event(topic, name, context, extra = {}) {
  return {
    timestamp: new Date().toISOString(),
    id: randomUUID(),
    event: { 'hub.topic': topic, 'hub.event': name, context, ...extra },
  };
}

export function patient(id, family, given) {
  return {
    resourceType: 'Patient',
    id,
    name: [{ use: 'official', family, given: [given] }],
    identifier: [
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] },
        system: 'urn:oid:1.2.36.146.595.217.0.1',
        value: `MRN-${id}`,
      },
    ],
    birthDate: '1815-12-10',
    gender: 'female',
  };
}

export function study(id, patientId) {
  return {
    resourceType: 'ImagingStudy',
    id,
    status: 'available',
    description: 'CT chest with contrast',
    subject: { reference: `Patient/${patientId}` },
    identifier: [
      { system: 'urn:dicom:uid', value: 'urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045' },
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'ACSN' }] },
        system: 'urn:oid:2.16.840.1.113883.19.5',
        value: `ACC-${id}`,
      },
    ],
    modality: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: 'CT' }],
  };
}

export function observation(id, display, value) {
  return {
    resourceType: 'Observation',
    id,
    status: 'preliminary',
    code: { coding: [{ system: 'http://snomed.info/sct', code: '427359005', display }] },
    valueString: value,
  };
}

/** A `DiagnosticReport-update` adding `resources` (PUT) at `versionId`. */
export function reportUpdate(topic, reportId, versionId, resources) {
  return event(
    topic,
    'DiagnosticReport-update',
    [
      { key: 'report', reference: { reference: `DiagnosticReport/${reportId}` } },
      {
        key: 'updates',
        resource: {
          resourceType: 'Bundle',
          id: randomUUID(),
          type: 'transaction',
          entry: resources.map((r) => ({ request: { method: 'PUT', url: `${r.resourceType}/${r.id}` }, resource: r })),
        },
      },
    ],
    { 'context.versionId': versionId },
  );
}
