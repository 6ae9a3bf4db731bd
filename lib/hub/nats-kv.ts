/**
 * Helpers of the NATS backplane: names on the broker, compare-and-set updates of JSON values in KV buckets, the
 * sweep of dead nodes' entries, the direct-get API, and the JetStream errors the adapter tells apart. Split from nats.ts.
 *
 * Internal to the hub, not a package entry point. Not tagged internal here: in a file's first comment the tag
 * attaches to the first statement, which `stripInternal` then drops from the declarations.
 *
 * @module
 */
import type { JetStreamManager, KV, StoredMsg } from 'nats';
import { escapeSegment } from './broker-names.js';
import { withTimeout } from './broker-options.js';

export const escTopic = (s: string): string => escapeSegment(s, '*>');
export const escToken = (s: string): string => escapeSegment(s, '.*>');
export const unescape = (s: string): string => (s.includes('%') ? s.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))) : s);
export const b64 = (s: string): string => Buffer.from(s).toString('base64url') || '_';

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Compare-and-set update of a KV entry holding a JSON value; `change` returns the new value (null: delete; the
 * value it was given: no change, nothing written).
 */
export async function casUpdate<T>(kv: KV, key: string, empty: T, change: (v: T) => T | null): Promise<T | null> {
  for (let attempt = 0; attempt < 32; attempt++) {
    const e = await kv.get(key);
    const exists = e !== null && e.operation === 'PUT';
    const current: T = exists ? (JSON.parse(dec.decode(e!.value)) as T) : empty;
    const next = change(current);
    if (next === current) return next; // unchanged: nothing to write
    try {
      if (next === null) {
        if (exists) await kv.delete(key, { previousSeq: e!.revision });
      } else if (e === null) await kv.create(key, enc.encode(JSON.stringify(next)));
      else if (!exists) await kv.create(key, enc.encode(JSON.stringify(next)));
      else await kv.update(key, enc.encode(JSON.stringify(next)), e.revision);
      return next;
    } catch (error) {
      if (!isWrongLastSequence(error) && !String((error as Error).message).includes('exists')) throw error;
    }
  }
  throw new Error('too many concurrent updates, try again');
}

/**
 * Removes the connections `swept` says are gone from every user and presence entry (compare-and-set, so that
 * concurrent sweeps agree); `leave` is called for every user whose last subscriber of a topic was among them.
 */
export async function sweepBuckets(users: KV, presence: KV, swept: (id: string) => boolean, t: number, leave: (tenant: string, topic: string, user: string) => Promise<void>): Promise<void> {
  for (const key of await withTimeout(collect(users), t, 'listing users')) {
    await withTimeout(casUpdate<[string, number][]>(users, key, [], (v) => {
      const rest = v.filter(([id]) => !swept(id));
      return rest.length === v.length ? v : rest.length > 0 ? rest : null;
    }), t, 'sweeping a user');
  }
  for (const key of await withTimeout(collect(presence), t, 'listing presence')) {
    let left: string[] = [];
    await withTimeout(casUpdate<Record<string, string>>(presence, key, {}, (v) => {
      const next: Record<string, string> = {};
      const before = new Set<string>();
      const after = new Set<string>();
      for (const [id, u] of Object.entries(v)) {
        before.add(u);
        if (swept(id)) continue;
        next[id] = u;
        after.add(u);
      }
      left = [...before].filter((u) => !after.has(u));
      if (Object.keys(next).length === Object.keys(v).length) return v;
      return Object.keys(next).length > 0 ? next : null;
    }), t, 'sweeping presence');
    const dot = key.indexOf('.');
    const tenant = Buffer.from(key.slice(0, dot), 'base64url').toString();
    const topic = Buffer.from(key.slice(dot + 1), 'base64url').toString();
    for (const user of left) await leave(tenant, topic, user);
  }
}

/** Every key of a KV bucket. */
export async function collect(kv: KV): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys()) out.push(k);
  return out;
}

/** The direct-get API: present on the manager nats.js returns, though its interface does not declare it. */
export interface DirectGet {
  getMessage(stream: string, query: { last_by_subj: string } | { seq: number; next_by_subj: string }): Promise<StoredMsg>;
}

export function direct(jsm: JetStreamManager): DirectGet {
  const d = (jsm as unknown as { direct?: DirectGet }).direct;
  if (d === undefined) throw new Error('this nats client has no direct-get API (nats 2.29 has it)');
  return d;
}

export function isNotFound(error: unknown): boolean {
  const e = error as { code?: string | number; api_error?: { code?: number }; message?: string };
  return e?.api_error?.code === 404 || e?.code === '404' || e?.code === 404 || /not found/i.test(String(e?.message));
}

export function isWrongLastSequence(error: unknown): boolean {
  const e = error as { api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10071 || /wrong last sequence/.test(String(e?.message));
}
