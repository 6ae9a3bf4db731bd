/**
 * Raw hub clients for the replay and history budget tests: a TCP socket that does the WebSocket handshake by hand,
 * sends masked JSON requests, parses the hub's frames as they come (incrementally, so that tens of MB stay cheap),
 * and can stop reading (`socket.pause()`: the kernel buffers fill, then the hub's own buffer does). Also a watch
 * on a server connection's `bufferedAmount` after every write, and a history filler.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { HeadParser } from '../../lib/index.js';
import type { Hub } from '../../lib/hub/index.js';
import { peerFrame } from './core.js';
import { upgradeHead } from './net.js';

export interface RawHubClient {
  socket: Socket;
  /** Every JSON text message received so far, parsed, in order. */
  messages: any[];
  /** Close codes received in close frames. */
  closeCodes: number[];
  /** Whether the TCP socket closed. */
  readonly ended: boolean;
  /** Sends a JSON request (a masked text frame). */
  send(value: unknown): void;
  /** Resolves with the first message (past or future) matching `match`; rejects after `ms`. */
  next(match: (m: any) => boolean, ms?: number): Promise<any>;
  /** Resolves once `predicate()` holds (checked on every message and every 50 ms); rejects after `ms`. */
  until(predicate: () => boolean, ms?: number, what?: string): Promise<void>;
  /** Stops reading from the socket: what the hub sends stays in the kernel, then in the hub. */
  stopReading(): void;
  /** Reads again. */
  startReading(): void;
  destroy(): void;
}

/** Connects to a hub on 127.0.0.1:`port` with `?token=`, completes the handshake, and parses what follows. */
export function rawHubClient(port: number, token: string): Promise<RawHubClient> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const messages: any[] = [];
    const closeCodes: number[] = [];
    const waiters = new Set<() => void>();
    const parser = new HeadParser('response');
    let upgraded = false;
    let ended = false;
    let pending: Buffer = Buffer.alloc(0);
    let fragments: Buffer[] = [];
    const wake = (): void => {
      for (const w of [...waiters]) w();
    };
    const parse = (): void => {
      let at = 0;
      for (;;) {
        if (pending.length - at < 2) break;
        const b0 = pending[at];
        let len = pending[at + 1] & 0x7f;
        let p = at + 2;
        if (len === 126) {
          if (pending.length - p < 2) break;
          len = pending.readUInt16BE(p);
          p += 2;
        } else if (len === 127) {
          if (pending.length - p < 8) break;
          len = Number(pending.readBigUInt64BE(p));
          p += 8;
        }
        if (pending.length - p < len) break;
        const payload = pending.subarray(p, p + len);
        at = p + len;
        const opcode = b0 & 0x0f;
        const fin = (b0 & 0x80) !== 0;
        if (opcode === 0x8) closeCodes.push(payload.length >= 2 ? payload.readUInt16BE(0) : 1005);
        else if (opcode === 0x1 || opcode === 0x0) {
          fragments.push(Buffer.from(payload));
          if (fin) {
            const text = Buffer.concat(fragments).toString();
            fragments = [];
            try {
              messages.push(JSON.parse(text));
            } catch {
              messages.push({ text });
            }
          }
        }
      }
      pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
    };
    const client: RawHubClient = {
      socket,
      messages,
      closeCodes,
      get ended() {
        return ended;
      },
      send: (value) => socket.write(peerFrame('server', { opcode: 1, payload: JSON.stringify(value) })),
      next(match, ms = 10_000) {
        let found: any;
        return client.until(() => (found = messages.find(match)) !== undefined, ms, 'a matching message').then(() => found);
      },
      until(predicate, ms = 10_000, what = 'a condition') {
        return new Promise((done, fail) => {
          const check = (): void => {
            if (!predicate()) return;
            finish();
            done();
          };
          const poll = setInterval(check, 50);
          const timer = setTimeout(() => {
            finish();
            fail(new Error(`timed out waiting for ${what}; last messages: ${JSON.stringify(messages.slice(-3)).slice(0, 400)}`));
          }, ms);
          const finish = (): void => {
            clearInterval(poll);
            clearTimeout(timer);
            waiters.delete(check);
          };
          waiters.add(check);
          check();
        });
      },
      stopReading: () => socket.pause(),
      startReading: () => socket.resume(),
      destroy: () => socket.destroy(),
    };
    socket.on('error', () => {});
    socket.on('close', () => {
      ended = true;
      if (!upgraded) reject(new Error('closed before the handshake completed'));
      wake();
    });
    socket.on('data', (chunk: Buffer) => {
      if (!upgraded) {
        const head = parser.push(chunk);
        if (head === null) return;
        if (head.status !== 101) {
          socket.destroy();
          return reject(new Error(`handshake answered ${head.status}`));
        }
        upgraded = true;
        pending = Buffer.from(parser.rest);
        parse();
        resolve(client);
        wake();
        return;
      }
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      parse();
      wake();
    });
    socket.once('connect', () => socket.write(upgradeHead(`/ws?token=${encodeURIComponent(token)}`)));
  });
}

/**
 * Watches a server connection's `bufferedAmount` right after every write the hub makes through it (`send` and
 * `sendPrepared`): `peak` is the most unsent data it ever held, not a sample.
 */
export function watchBuffered(connection: { bufferedAmount: number; send: Function; sendPrepared: Function }): { readonly peak: number; readonly writes: number } {
  const state = { peak: connection.bufferedAmount, writes: 0 };
  for (const name of ['send', 'sendPrepared'] as const) {
    const original = connection[name];
    connection[name] = function (this: unknown, ...args: unknown[]) {
      const result = original.apply(this, args);
      state.writes++;
      const now = connection.bufferedAmount;
      if (now > state.peak) state.peak = now;
      return result;
    };
  }
  return state;
}

/** One published message, as the test knows it. */
export interface Published {
  topic: string;
  seq: number;
  epoch: string;
  id: string;
}

/** ~`size` characters of JSON string data, different per message, starting with its id. */
export function payload(id: string, size: number): string {
  return `${id}:${'x'.repeat(Math.max(0, size - id.length - 1))}`;
}

/** The id a message's `data` starts with (see {@link payload}). */
export function idOf(data: unknown): string {
  return typeof data === 'string' ? data.slice(0, data.indexOf(':')) : '?';
}

/** Publishes `perTopic` messages of ~`size` characters to each topic, round-robin (so topics interleave). */
export async function fillHistory(hub: Hub, topics: readonly string[], perTopic: number, size: number, tenant?: string): Promise<Published[]> {
  const out: Published[] = [];
  for (let round = 0; round < perTopic; round++) {
    for (const topic of topics) {
      const id = `${topic}/${round}`;
      const r = await hub.publish({ topic, type: 'h', data: payload(id, size), ...(tenant ? { tenant } : {}) });
      out.push({ topic, seq: r.seq, epoch: r.epoch, id });
    }
  }
  return out;
}

/** The server-side client of the next connection the hub accepts. */
export function nextConnection(hub: Hub): Promise<{ id: string; connection: any }> {
  return new Promise((resolve) => hub.once('connection', (client: { id: string; connection: any }) => resolve(client)));
}

/** Resolves once no write went through the watched connection for `quietMs` (checked every 50 ms), or after `maxMs`. */
export async function settled(watch: { readonly writes: number }, quietMs = 500, maxMs = 20_000): Promise<void> {
  const start = Date.now();
  let writes = -1;
  let since = Date.now();
  while (Date.now() - start < maxMs) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    if (watch.writes !== writes) {
      writes = watch.writes;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
  }
}
