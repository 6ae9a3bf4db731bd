/**
 * A recording WebSocket for service tests: this package's browser-style `WebSocket`, every text message parsed and
 * kept, with waits for a message matching a predicate and for the close.
 */
import { type ClientOptions, WebSocket } from '../../lib/index.js';

export interface RecordingSocket {
  ws: WebSocket;
  /** Parsed JSON messages (text that is not JSON is kept as `{ text }`). */
  messages: any[];
  /** Resolves on open; rejects when the socket closes first. */
  opened: Promise<void>;
  /** Resolves with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves with the first message (past or future) for which `match` is true. */
  next(match: (m: any) => boolean, timeout?: number): Promise<any>;
  send(value: unknown): void;
}

/** `options`: the engine client's options (request headers such as `Cookie`, …). */
export function openSocket(url: string, protocols?: string[], timeout = 10_000, options: ClientOptions = {}): RecordingSocket {
  const ws = new WebSocket(url, protocols, options);
  const messages: any[] = [];
  const waiters = new Set<() => void>();
  ws.addEventListener('message', (event: any) => {
    const data = event.data as string;
    let parsed: any;
    try {
      parsed = JSON.parse(data);
    } catch {
      parsed = { text: data };
    }
    messages.push(parsed);
    for (const w of [...waiters]) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.addEventListener('close', (event: any) => {
      resolve({ code: event.code, reason: event.reason });
      for (const w of [...waiters]) w();
    });
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    void closed.then((c) => reject(new Error(`closed before open: ${c.code} ${c.reason}`)));
  });
  opened.catch(() => undefined);
  let closedInfo: { code: number } | undefined;
  void closed.then((c) => (closedInfo = c));
  return {
    ws,
    messages,
    opened,
    closed,
    send: (value) => ws.send(typeof value === 'string' ? value : JSON.stringify(value)),
    next(match, ms = timeout) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const found = messages.find(match);
          if (found !== undefined) {
            done();
            resolve(found);
          } else if (closedInfo) {
            done();
            reject(new Error(`socket closed (${closedInfo.code}) before the message came; got ${JSON.stringify(messages).slice(0, 500)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no matching message within ${ms} ms; got ${JSON.stringify(messages).slice(0, 500)}`));
        }, ms);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
