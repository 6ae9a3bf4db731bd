/**
 * What the hub does with a resume answer before anything is written: the replay cap (a resume that would replay
 * too much replays nothing and reports the exact gaps instead), and `history` pages with their cursors (no answer
 * larger than its limits; the rest behind a cursor).
 *
 * @module
 */
import type { ResumeAnswer } from './backplane.js';
import type { Gap, PatternSince, PublishedMessage, StreamPosition } from './history.js';

/** Approximate bytes of a topic message's frame: its JSON fields plus the envelope. */
export function messageBytes(m: PublishedMessage): number {
  return m.data.length + m.type.length + m.topic.length + m.tenant.length + m.epoch.length + 96;
}

/**
 * Applies the replay cap: within `maxMessages` and `maxBytes`, the answer as it is; beyond, no message and, per
 * topic, the range of the messages not replayed as a gap (joined to a gap of the same topic and epoch that ends
 * right before it), with `recovered: false`. Returns null when the answer is within the cap.
 */
export function capReplay(answer: ResumeAnswer, maxMessages: number, maxBytes: number): { gaps: Gap[] } | null {
  const messages = answer.messages;
  if (messages.length === 0) return null;
  let bytes = 0;
  let over = messages.length > maxMessages;
  for (let i = 0; !over && i < messages.length; i++) {
    bytes += messageBytes(messages[i]);
    if (bytes > maxBytes) over = true;
  }
  if (!over) return null;
  const gaps: Gap[] = answer.gaps.map((g) => ({ ...g }));
  const skipped = new Map<string, Gap>();
  for (const m of messages) {
    const key = `${m.topic}\0${m.epoch}`;
    const g = skipped.get(key);
    if (g === undefined) skipped.set(key, { tenant: m.tenant, topic: m.topic, epoch: m.epoch, from: m.seq, to: m.seq });
    else {
      if (m.seq < g.from) g.from = m.seq;
      if (m.seq > g.to) g.to = m.seq;
    }
  }
  for (const g of skipped.values()) {
    const before = gaps.find((p) => p.topic === g.topic && p.epoch === g.epoch && p.to + 1 === g.from);
    if (before !== undefined) before.to = g.to;
    else gaps.push(g);
  }
  return { gaps };
}

/** Where a `history` page continues: the request's `since` and, for patterns, the last tenant offset sent. */
export interface HistoryCursor {
  tenant: string;
  name: string;
  /** Exact topic: the position of the last message sent. Pattern: the request's own `since` (kept as it was). */
  since: StreamPosition | PatternSince | null;
  /** Pattern: the tenant offset of the last message sent (later pages hold only what comes after it). */
  after: number;
}

/** The opaque text of a cursor (base64url JSON). */
export function encodeCursor(cursor: HistoryCursor): string {
  return Buffer.from(JSON.stringify({ v: 1, t: cursor.tenant, n: cursor.name, s: cursor.since, a: cursor.after })).toString('base64url');
}

/** Longest cursor accepted, in characters. */
export const MAX_CURSOR_LENGTH = 65_536;

/**
 * Reads a cursor from a client. Returns a message saying what is wrong, or the cursor. The `since` inside is
 * checked again by the caller, as any `since` from a client.
 */
export function decodeCursor(text: unknown): HistoryCursor | string {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_CURSOR_LENGTH) return 'cursor must be the non-empty string `next` of an earlier history answer';
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString());
  } catch {
    return 'cursor is not one this hub issued (not the `next` of a history answer)';
  }
  const o = value as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null || o.v !== 1 || typeof o.t !== 'string' || typeof o.n !== 'string' || typeof o.a !== 'number' || !Number.isInteger(o.a) || o.a < 0) {
    return 'cursor is not one this hub issued (not the `next` of a history answer)';
  }
  return { tenant: o.t, name: o.n, since: (o.s ?? null) as StreamPosition | PatternSince | null, after: o.a };
}

/** A page of a `history` answer. */
export interface HistoryPage extends ResumeAnswer {
  /** Whether more messages are held after this page: ask again with `cursor: next`. */
  more: boolean;
  /** The cursor of the next page (only when `more`). */
  next?: string;
}

/**
 * Cuts a page from a resume answer: at most `limit` messages and `maxBytes` of them (always at least one), after
 * `after` for a pattern continuation. `cursorOf(last)` makes the cursor of the page after it.
 *
 * Gaps: a first page carries the answer's gaps. A pattern continuation carries the gaps of topics none of whose
 * messages before the cursor is still held (their range may have been reported on an earlier page already: a
 * gap may be reported twice, never missed).
 */
export function cutPage(answer: ResumeAnswer, limit: number, maxBytes: number, after: number | null, cursorOf: (last: PublishedMessage) => string): HistoryPage {
  let messages = answer.messages;
  let gaps = answer.gaps;
  if (after !== null) {
    const seen = new Set<string>();
    for (const m of messages) if (m.offset <= after) seen.add(m.topic);
    messages = messages.filter((m) => m.offset > after);
    gaps = gaps.filter((g) => !seen.has(g.topic));
  }
  let n = 0;
  let bytes = 0;
  while (n < messages.length && n < limit) {
    bytes += messageBytes(messages[n]);
    if (n > 0 && bytes > maxBytes) break;
    n++;
  }
  const more = n < messages.length;
  const page: HistoryPage = { ...answer, messages: more ? messages.slice(0, n) : messages, gaps, recovered: after === null ? answer.recovered : gaps.length === 0, more };
  if (more) page.next = cursorOf(messages[n - 1]);
  return page;
}
