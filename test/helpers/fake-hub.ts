/**
 * A small hub that speaks the native protocol of hub-spec.md faithfully enough to test the hub client against it:
 * acks by request_id, error replies, topic messages with seq/epoch/ts, resume from `since` (exact and wildcard,
 * with gaps), app-level ping/pong, refresh, first-message auth, and close codes on command. History lives in a
 * {@link FakeStore} that can outlive a server, so a "restarted" hub on the same port still resumes.
 */
import { createServer, type IncomingUpgrade, type WebSocketConnection, type WebSocketServer } from '../../lib/index.js';

export interface StoredMessage {
  tenant: string;
  topic: string;
  type: string;
  data: unknown;
  seq: number;
  epoch: string;
  ts: number;
  offset: number;
}

interface TopicStream {
  epoch: string;
  seq: number;
  entries: StoredMessage[];
}

/** Topic streams and history, shared by the servers that use it (a hub with a persistent backplane). */
export class FakeStore {
  readonly topics = new Map<string, TopicStream>();
  offset = 0;
  /** The epoch of `offset`: a new store (a hub restarted without a persistent backplane) has a new one. */
  readonly offsetEpoch = `oe${Math.random().toString(36).slice(2, 10)}`;
  private epochs = 0;
  constructor(readonly historySize = 100) {}

  publish(tenant: string, topic: string, type: string, data: unknown): StoredMessage {
    const key = `${tenant}/${topic}`;
    let s = this.topics.get(key);
    if (s === undefined) this.topics.set(key, (s = { epoch: `e${++this.epochs}-${this.offsetEpoch}`, seq: 0, entries: [] }));
    const m: StoredMessage = { tenant, topic, type, data, seq: ++s.seq, epoch: s.epoch, ts: Date.now(), offset: ++this.offset };
    s.entries.push(m);
    if (s.entries.length > this.historySize) s.entries.shift();
    return m;
  }

  stream(tenant: string, topic: string): TopicStream | undefined {
    return this.topics.get(`${tenant}/${topic}`);
  }
}

export function matches(pattern: string, topic: string): boolean {
  const p = pattern.split('.');
  const t = topic.split('.');
  const from = (i: number, j: number): boolean => {
    if (i === p.length) return j === t.length;
    if (p[i] === '#') {
      for (let k = j; k <= t.length; k++) if (from(i + 1, k)) return true;
      return false;
    }
    return j < t.length && (p[i] === '*' || p[i] === t[j]) && from(i + 1, j + 1);
  };
  return from(0, 0);
}

export interface FakeHubOptions {
  /** Port to listen on (0: any). */
  port?: number;
  store?: FakeStore;
  /** Whether a token is good; a bad or missing one gets close 4401 right after the upgrade. Default: any. */
  acceptToken?: (token: string | undefined) => boolean;
  /** Expect `{"type":"auth"}` as the first message instead of a token in the upgrade. */
  messageAuth?: boolean;
  /** On resume, also re-send this many messages the client already has (to prove it de-duplicates). */
  replayOverlap?: number;
  /** Request types that are never answered. */
  ignore?: string[];
}

export interface FakeConnection {
  connection: WebSocketConnection;
  token: string | undefined;
  /** Every frame received, parsed. */
  frames: Array<Record<string, any>>;
  subscriptions: Map<string, string>;
  tokensRefreshed: string[];
}

export interface FakeHub {
  port: number;
  url: string;
  store: FakeStore;
  /** Live connections. */
  connections: Set<FakeConnection>;
  /** Every connection ever accepted, in order. */
  history: FakeConnection[];
  /** When true the hub neither answers nor sends anything (a dead peer whose TCP connection stays up). */
  mute: boolean;
  publish(topic: string, type: string, data: unknown, tenant?: string): StoredMessage;
  sendAll(frame: unknown): void;
  closeAll(code: number, reason?: string): void;
  /** Drops every connection without a close frame and stops listening. */
  kill(): Promise<void>;
}

const DEFAULT_TENANT = 'default';

function frameOf(m: StoredMessage): string {
  return JSON.stringify({ type: m.type, data: m.data, topic: m.topic, tenant: m.tenant, seq: m.seq, epoch: m.epoch, ts: m.ts });
}

export async function startFakeHub(options: FakeHubOptions = {}): Promise<FakeHub> {
  const store = options.store ?? new FakeStore();
  const ignore = new Set(options.ignore ?? []);
  const overlap = options.replayOverlap ?? 0;
  const connections = new Set<FakeConnection>();
  const history: FakeConnection[] = [];

  const server: WebSocketServer = createServer({
    heartbeat: false,
    selectProtocol: (offered) => (offered[0] === 'bearer' ? 'bearer' : undefined),
  });
  server.on('connection', (connection: WebSocketConnection, request: IncomingUpgrade) => {
    const token = request.protocols[0] === 'bearer' ? request.protocols[1] : (request.query.get('token') ?? undefined);
    const c: FakeConnection = { connection, token, frames: [], subscriptions: new Map(), tokensRefreshed: [] };
    connections.add(c);
    history.push(c);
    connection.on('close', () => connections.delete(c));
    connection.on('error', () => {});
    let authed = !options.messageAuth;
    if (authed && options.acceptToken && !options.acceptToken(token)) return connection.close(4401, 'invalid token');
    const send = (frame: unknown): void => {
      if (!hub.mute) connection.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
    };
    connection.on('message', (raw: Buffer) => {
      if (hub.mute) return;
      let msg: Record<string, any>;
      try {
        msg = JSON.parse(raw.toString());
      } catch {
        return send({ type: 'error', data: { code: 'invalid_request', message: 'not JSON' }, request_id: null });
      }
      c.frames.push(msg);
      const id = msg.request_id ?? null;
      const ack = (data?: unknown): void => send(data === undefined ? { type: 'ack', request_id: id } : { type: 'ack', data, request_id: id });
      const error = (code: string, message: string): void => send({ type: 'error', data: { code, message }, request_id: id });
      if (!authed) {
        if (msg.type !== 'auth') return connection.close(4401, 'authenticate first');
        c.token = msg.token ?? msg.data?.token;
        if (options.acceptToken && !options.acceptToken(c.token)) return connection.close(4401, 'invalid token');
        authed = true;
        return send({ type: 'auth_ok', request_id: id });
      }
      if (ignore.has(msg.type)) return;
      const data = msg.data ?? {};
      const tenant: string = data.tenant ?? DEFAULT_TENANT;
      switch (msg.type) {
        case 'ping':
          return send({ type: 'pong', data: {}, request_id: id });
        case 'pong':
          return;
        case 'refresh':
          c.tokensRefreshed.push(data.token);
          return ack();
        case 'publish': {
          if (typeof data.topic !== 'string' || typeof data.type !== 'string') return error('invalid_request', 'publish needs topic and type');
          const m = hub.publish(data.topic, data.type, data.data, tenant);
          return ack({ seq: m.seq, epoch: m.epoch });
        }
        case 'unsubscribe':
          c.subscriptions.delete(data.topic);
          return ack({ topic: data.topic, tenant });
        case 'subscribe': {
          const topic: string = data.topic;
          if (typeof topic !== 'string' || topic.startsWith('forbidden')) return error('subscription_failed', `not allowed to subscribe to ${String(topic)}`);
          c.subscriptions.set(topic, tenant);
          const pattern = topic.split('.').some((s) => s === '*' || s === '#');
          const replay: StoredMessage[] = [];
          const gaps: unknown[] = [];
          let recovered = true;
          const resumeStream = (s: TopicStream, topicName: string, after: number, sameEpoch: boolean): void => {
            if (!sameEpoch && after > 0) recovered = false;
            const from = sameEpoch ? after : 0;
            const first = s.entries[0]?.seq ?? s.seq + 1;
            if (from + 1 < first) {
              gaps.push({ topic: topicName, tenant, epoch: s.epoch, from: from + 1, to: first - 1 });
              recovered = false;
            }
            for (const m of s.entries) if (m.seq > from - overlap) replay.push(m);
          };
          const ackData: Record<string, unknown> = { topic, tenant };
          if (!pattern) {
            const s = store.stream(tenant, topic);
            if (s !== undefined) Object.assign(ackData, { epoch: s.epoch, seq: s.seq });
            if (data.since && s !== undefined) resumeStream(s, topic, data.since.seq, data.since.epoch === s.epoch);
          } else {
            ackData.offset = store.offset;
            ackData.offsetEpoch = store.offsetEpoch;
            if (data.since) {
              const positions = data.since.positions ?? {};
              // An offset of another offset epoch (another store) means nothing: every topic is unseen.
              const since = typeof data.since.offsetEpoch === 'string' && data.since.offsetEpoch !== store.offsetEpoch ? 0 : data.since.offset;
              for (const [key, s] of store.topics) {
                const name = key.slice(key.indexOf('/') + 1);
                if (!key.startsWith(`${tenant}/`) || !matches(topic, name)) continue;
                const known = positions[name];
                if (known) resumeStream(s, name, known.seq, known.epoch === s.epoch);
                else if (typeof since === 'number') for (const m of s.entries) if (m.offset > since) replay.push(m);
              }
              replay.sort((a, b) => a.offset - b.offset);
            }
          }
          ackData.recovered = recovered;
          if (gaps.length) ackData.gaps = gaps;
          ack(ackData);
          for (const m of replay) send(frameOf(m));
          return;
        }
        case 'fail':
          return error('invalid_request', 'this request always fails');
        default:
          if (id !== null) ack({ echo: msg.data ?? null });
      }
    });
  });
  const address = await server.listen(options.port ?? 0, '127.0.0.1');

  const hub: FakeHub = {
    port: address.port,
    url: `ws://127.0.0.1:${address.port}/ws`,
    store,
    connections,
    history,
    mute: false,
    publish(topic, type, data, tenant = DEFAULT_TENANT) {
      const m = store.publish(tenant, topic, type, data);
      const text = frameOf(m);
      for (const c of connections) {
        for (const [pattern, t] of c.subscriptions) {
          if (t === tenant && matches(pattern, topic)) {
            if (!hub.mute) c.connection.send(text);
            break;
          }
        }
      }
      return m;
    },
    sendAll(frame) {
      for (const c of connections) c.connection.send(JSON.stringify(frame));
    },
    closeAll(code, reason = '') {
      for (const c of connections) c.connection.close(code, reason);
    },
    async kill() {
      for (const c of connections) c.connection.terminate();
      await server.close({ timeout: 100 });
    },
  };
  return hub;
}
