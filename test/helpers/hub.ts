/** Hub test helpers: a hub on a random port, browser-style clients that record what they receive. */
import { createHub, type Hub, type HubOptions, signJwt } from '../../lib/hub/index.js';
import { WebSocket, type ClientOptions } from '../../lib/index.js';

export const SECRET = 'hub-test-secret-0123456789abcdef';

/** An HS256 JWT for `sub` (expires in `expiresIn` s, default 1 h), with optional extra claims. */
export function token(sub: string, claims: Record<string, unknown> = {}, expiresIn = 3600): string {
  return signJwt({ sub, ...claims }, SECRET, { expiresIn });
}

/** A hub verifying JWTs with {@link SECRET}, listening on a random port. */
export async function startHub(options: HubOptions = {}): Promise<{ hub: Hub; url: string; port: number }> {
  const hub = createHub({ jwt: options.authenticate ? undefined : { secret: SECRET }, ...options });
  const address = await hub.listen(0, '127.0.0.1');
  return { hub, url: `ws://127.0.0.1:${address.port}/ws`, port: address.port };
}

/** A browser-style WebSocket that records every message and its close event. */
export interface Recorder {
  ws: WebSocket;
  /** Every received text message (binary ones as `<binary n>`). */
  texts: string[];
  /** Received JSON messages (text that parsed). */
  json: Array<Record<string, any>>;
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string; wasClean: boolean }>;
  /** Resolves with the first JSON message (from now or already received after index `from`) matching `match`. */
  next(match: (m: Record<string, any>) => boolean, ms?: number, from?: number): Promise<Record<string, any>>;
  /** Resolves once at least `n` JSON messages match. */
  count(match: (m: Record<string, any>) => boolean, n: number, ms?: number): Promise<Array<Record<string, any>>>;
  send(value: unknown): void;
}

export function record(ws: WebSocket): Recorder {
  const texts: string[] = [];
  const json: Array<Record<string, any>> = [];
  const waiters = new Set<() => void>();
  ws.addEventListener('message', (event: Event) => {
    const data = (event as MessageEvent).data as unknown;
    if (typeof data === 'string') {
      texts.push(data);
      try {
        const v = JSON.parse(data);
        if (typeof v === 'object' && v !== null) json.push(v);
      } catch {
        // plain text
      }
    } else texts.push(`<binary>`);
    for (const w of [...waiters]) w();
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('close', () => reject(new Error('closed before open')));
  });
  opened.catch(() => {});
  const closed = new Promise<{ code: number; reason: string; wasClean: boolean }>((resolve) => {
    ws.addEventListener('close', (e: Event) => {
      const c = e as unknown as { code: number; reason: string; wasClean: boolean };
      resolve({ code: c.code, reason: c.reason, wasClean: c.wasClean });
      for (const w of [...waiters]) w();
    });
  });
  const waitFor = <T>(check: () => T | undefined, ms: number, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const now = check();
      if (now !== undefined) return resolve(now);
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(texts.slice(-5))}`));
      }, ms);
      const w = (): void => {
        const v = check();
        if (v !== undefined) {
          clearTimeout(timer);
          waiters.delete(w);
          resolve(v);
        }
      };
      waiters.add(w);
    });
  return {
    ws,
    texts,
    json,
    opened,
    closed,
    next: (match, ms = 5000, from = 0) => waitFor(() => json.slice(from).find(match), ms, 'a matching message'),
    count: (match, n, ms = 5000) =>
      waitFor(() => {
        const found = json.filter(match);
        return found.length >= n ? found : undefined;
      }, ms, `${n} matching messages`),
    send: (value) => ws.send(typeof value === 'string' ? value : JSON.stringify(value)),
  };
}

/** Opens a browser-style WebSocket and waits for `open`. */
export async function open(url: string, protocols?: string | string[], options?: ClientOptions): Promise<Recorder> {
  const r = record(new WebSocket(url, protocols, options));
  await r.opened;
  return r;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
