// The admin API: the read model, the live feed, and actions. One Store
// holds what the views show; the live WebSocket only says "something
// changed" and the store fetches /admin/api/state?since=… (one request in
// flight at a time, coalesced).

export interface Version {
  versionId: string;
  priorVersionId: string | null;
  eventId: string;
  timestamp: string;
  eventName: string;
}

/** The context in a few words, computed by the hub (the tray shows the same). */
export interface ContextSummary {
  text: string;
  patient: string | null;
  mrn: string | null;
  study: string | null;
  report: string | null;
}

export interface OpenContext {
  summary: ContextSummary | null;
  anchorType: string;
  anchorId: string;
  versionId: string;
  current: boolean;
  open: { timestamp?: string; id?: string; event: { 'hub.event': string; context: ContextItem[] } };
  content: { entry?: { fullUrl?: string; resource: FhirResource }[] };
  history: Version[];
}

export interface ContextItem {
  key: string;
  resource?: FhirResource;
  reference?: { reference?: string };
}

// FHIR resources are open-ended; views read them defensively.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type FhirResource = { resourceType?: string; id?: string; [k: string]: any };

export interface Sub {
  endpoint: string;
  name: string;
  named: boolean;
  events: string[];
  leaseLeftSecs: number;
  connected: boolean;
  connectedSince: string | null;
  disconnectedSince: string | null;
  graceLeftSecs: number | null;
  state: 'connected' | 'grace' | 'disconnected' | 'waiting';
  stateLabel: string;
  lastAck: { status: number; latencyMs: number; count: number } | null;
  sync: Sync;
  queueDepth: number | null;
  queueCapacity: number;
}

export type SyncState = 'in-sync' | 'behind' | 'refused' | 'unresponsive' | 'paused' | 'no-ack';

/** Is the app on the hub's context, from what it acknowledged. */
export interface Sync {
  state: SyncState;
  label: string;
  acked: { event: string; id: string; versionId: string | null; at: string } | null;
  pending: number;
}

/** A SyncError shown until someone acknowledges it; newest first. */
export interface SyncErrorItem {
  seq: number;
  topic: string;
  app: string;
  event: string;
  reason: string;
  when: string;
}

export interface Topic {
  topic: string;
  /** The clinician's session topic (listed first, even with no app). */
  session: boolean;
  summary: ContextSummary | null;
  contexts: OpenContext[];
  subscriptions: Sub[];
}

export interface Gone {
  topic: string;
  name: string;
  when: string;
  why: string;
}

export interface LogEntry {
  seq: number;
  received: string;
  topic: string;
  direction: 'in' | 'out' | 'derived';
  name: string;
  app: string | null;
  deliveredTo: string[];
  held: boolean;
  event: { id?: string; timestamp?: string; event?: { 'hub.event'?: string } } | null;
}

export interface Setting {
  label: string;
  value: unknown;
  source: string;
}

export interface ReadModel {
  hub: {
    version: string;
    url: string;
    paused: boolean;
    now: string;
    /** lockstep.db and its WAL, in bytes; null without durable state. */
    databaseBytes?: number | null;
    /** The event journal's size bound, in bytes. */
    journalMaxBytes?: number | null;
  };
  settings: Record<string, Setting>;
  topics: Topic[];
  gone: Gone[];
  syncErrors: SyncErrorItem[];
  events: LogEntry[];
  lastSeq: number;
}

export type Link = 'connecting' | 'live' | 'offline' | 'unauthorized';

/** Events kept in the page (the hub keeps 200). */
const MAX_LOG = 1000;
/**
 * At most one state fetch per this many ms: a hub publishing hundreds of
 * events a second must not be asked for its state hundreds of times.
 */
const MIN_FETCH_MS = 100;

declare global {
  interface Window {
    /** Set by the tray app for its own window (Tauri initialization script). */
    __LOCKSTEP_ADMIN_TOKEN__?: string;
    /** Set by the tray app: the folder of its log files. */
    __LOCKSTEP_LOGS_DIR__?: string;
  }
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  const token = window.__LOCKSTEP_ADMIN_TOKEN__;
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || `${res.status} ${res.statusText}`);
  return data as T;
}

export class Store extends EventTarget {
  model: ReadModel | null = null;
  /** Newest last. */
  log: LogEntry[] = [];
  link: Link = 'connecting';
  /** Local time when `model` was fetched, to count leases down. */
  fetchedAt = 0;
  private lastSeq = 0;
  private inFlight = false;
  private again = false;
  private socket: WebSocket | null = null;
  private retryMs = 500;
  private lastFetch = 0;

  async start(): Promise<void> {
    if (window.__LOCKSTEP_ADMIN_TOKEN__) {
      // The tray window: swap the token for a session cookie, which the
      // live WebSocket (no headers in browsers) then carries.
      await call('POST', '/admin/api/session').catch(() => undefined);
    }
    this.connect();
    await this.refresh();
  }

  private changed(): void {
    this.dispatchEvent(new Event('change'));
  }

  private setLink(link: Link): void {
    if (this.link !== link) {
      this.link = link;
      this.changed();
    }
  }

  private connect(): void {
    const url = new URL('/admin/api/live', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url);
    this.socket = ws;
    ws.onopen = () => {
      this.retryMs = 500;
      this.setLink('live');
      void this.refresh();
    };
    ws.onmessage = () => void this.refresh();
    ws.onclose = () => {
      if (this.socket !== ws) return;
      this.socket = null;
      if (this.link !== 'unauthorized') this.setLink('offline');
      // Reconnect with backoff; the hub may be restarting.
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10000);
    };
  }

  /** Fetches what changed since the last fetch; coalesces bursts. */
  async refresh(): Promise<void> {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = true;
    try {
      do {
        this.again = false;
        const wait = this.lastFetch + MIN_FETCH_MS - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        this.lastFetch = Date.now();
        const model = await call<ReadModel>('GET', `/admin/api/state?since=${this.lastSeq}`);
        if (model.lastSeq < this.lastSeq) {
          // The hub restarted: start the log over.
          this.log = [];
          this.lastSeq = 0;
          this.again = true;
          continue;
        }
        this.log.push(...model.events);
        if (this.log.length > MAX_LOG) this.log.splice(0, this.log.length - MAX_LOG);
        this.lastSeq = model.lastSeq;
        this.model = model;
        this.fetchedAt = Date.now();
        this.changed();
      } while (this.again);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) this.setLink('unauthorized');
      else this.setLink('offline');
    } finally {
      this.inFlight = false;
    }
  }

  async act(method: string, path: string, body?: unknown): Promise<unknown> {
    const result = await call(method, path, body);
    await this.refresh();
    return result;
  }
}
