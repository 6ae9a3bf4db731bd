/**
 * Per-topic sequence numbers, epochs and bounded history (by count, by age and by bytes), and the resume computation:
 * what a client that saw up to some position has missed, as the messages still held plus the exact ranges no longer
 * held.
 *
 * Every held message is in two lists: its topic's (oldest first) and the store's (publication order across all
 * topics and tenants). Whatever drops a message — the count, the age, a byte cap, {@link HistoryStore.sweep} — drops
 * its topic's oldest, which is why what is lost is always an exact range (`droppedSeq`); the store's list makes
 * expiry and the store-wide byte cap cost what they drop, not a walk over every topic. A dropped message is unlinked
 * from both lists at once, so nothing of the store keeps it alive.
 *
 * Used by {@link MemoryBackplane}; adapters for brokers keep the same semantics in their store.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { matches } from './topics.js';

/** Defaults of {@link HistoryOptions}. */
export const HISTORY_DEFAULTS = {
  /** 100 messages kept per topic. */
  size: 100,
  /** 5 minutes: older messages are dropped from the history. */
  ttl: 300_000,
  /** 100,000 topics with history per store; the least recently published topic's history is dropped beyond it. */
  maxTopics: 100_000,
  /** 64 MiB of history per store (as counted by {@link historyEntryBytes}); the oldest message is dropped beyond it. */
  maxBytes: 64 * 1024 * 1024,
  /**
   * 8 MiB of history per topic: one topic can take at most an eighth of the default store, so a topic of large
   * messages cannot push every other topic's history out, while 100 messages of up to ~40 KiB of text still fit.
   */
  maxTopicBytes: 8 * 1024 * 1024,
} as const;

/**
 * Bytes counted per held message besides its `data`, `type` and `topic` text: the message object, its list links
 * and numbers. Measured at about 180 bytes of heap per message on Node 20–24 (x64) with strings shared; rounded up.
 */
export const HISTORY_ENTRY_OVERHEAD = 192;

/**
 * The bytes a held message counts against {@link HistoryOptions.maxBytes} and {@link HistoryOptions.maxTopicBytes}:
 * 2 bytes per UTF-16 code unit of `data`, `type` and `topic` (the most V8 uses for a string; text that is all
 * Latin-1 takes half of it, so the count errs on the high side), plus {@link HISTORY_ENTRY_OVERHEAD}. Constant time:
 * string lengths only, no encoding.
 */
export function historyEntryBytes(topic: string, type: string, data: string): number {
  return 2 * (data.length + type.length + topic.length) + HISTORY_ENTRY_OVERHEAD;
}

/**
 * How much history a store keeps. Each bound drops the oldest messages first, and a resume then reports exactly what
 * was dropped as a gap. All values are non-negative numbers (`Infinity`: no bound); anything else is a RangeError.
 */
export interface HistoryOptions {
  /** Messages kept per topic; 0 keeps none (sequence numbers still count). Default: 100. */
  size?: number;
  /**
   * Milliseconds a message stays in the history. Expired messages are dropped when their topic is read or published
   * to, whenever anything is published, and by {@link HistoryStore.sweep} (which {@link MemoryBackplane} runs on a
   * timer). Default: 300,000 (5 min).
   */
  ttl?: number;
  /** Topics whose history is kept; beyond it the least recently published one is forgotten (its epoch ends). Default: 100,000. */
  maxTopics?: number;
  /**
   * Bytes of history in the whole store, counted by {@link historyEntryBytes}; beyond it the oldest message of the
   * store (in publication order, whatever its topic or tenant) is dropped, until it fits. Default: 67,108,864 (64 MiB).
   */
  maxBytes?: number;
  /**
   * Bytes of history per topic, counted by {@link historyEntryBytes}; beyond it the topic's oldest message is
   * dropped, until it fits (a message larger than this is delivered but not kept). Default: 8,388,608 (8 MiB).
   */
  maxTopicBytes?: number;
}

/** A position in a topic's stream: the last sequence number seen in an epoch. */
export interface StreamPosition {
  epoch: string;
  seq: number;
}

/**
 * A published topic message as it travels between hubs and is kept in history. `data` is already serialized
 * (JSON text) so that every hub splices the same bytes into its frames.
 */
export interface PublishedMessage {
  tenant: string;
  topic: string;
  /** The message's type, as the publisher gave it. */
  type: string;
  /** The message's data, serialized as JSON text. */
  data: string;
  /** Sequence number in the topic's epoch, from 1, contiguous. */
  seq: number;
  epoch: string;
  /** Publication time, ms since the epoch. */
  ts: number;
  /** Position in the tenant's stream of publications (monotonic per tenant across topics), for wildcard resume. */
  offset: number;
}

/**
 * `to` of a {@link Gap} whose end cannot be known: the epoch itself was lost (a broker restarted without
 * persistence), so everything after `from` in that epoch is missing and the topic continues in a new epoch.
 * `Number.MAX_SAFE_INTEGER` (9007199254740991) on the wire; the hub client turns it into `Infinity`.
 */
export const GAP_UNKNOWN_END = Number.MAX_SAFE_INTEGER;

/** A missing range of sequence numbers, inclusive, in one topic's epoch. */
export interface Gap {
  tenant: string;
  topic: string;
  epoch: string;
  from: number;
  /** Last missing sequence number, inclusive; {@link GAP_UNKNOWN_END} when the epoch ended with an unknown last seq. */
  to: number;
}

/** The answer to a resume request for one subscription: messages to replay in order, and ranges that are lost. */
export interface ResumeResult {
  messages: PublishedMessage[];
  gaps: Gap[];
  /** Whether everything missed is in `messages` (no gap). */
  recovered: boolean;
}

/** What a client sends to resume a wildcard subscription (see the README's "History and resume"). */
export interface PatternSince {
  /** The last position seen, per topic. */
  positions?: Record<string, StreamPosition>;
  /** The tenant stream offset the subscription's ack (or last resume) reported; topics not in `positions` replay from it. */
  offset?: number;
  /**
   * The offset epoch reported with `offset` (the ack's `offsetEpoch`). Offsets count publications of one stream;
   * when the hub's stream is not the one the offset came from (a restarted hub without a persistent backplane, a
   * broker that lost its data), the offset means nothing: every matching topic is then treated as unseen — all that
   * is held is replayed, with gaps where messages are known to be gone. Without it, an offset is trusted unless it
   * is ahead of the current one (which also proves it is from another stream).
   */
  offsetEpoch?: string;
}

/**
 * The tenant offset a pattern resume replays topics without a position from: `since.offset`, or 0 (everything held)
 * when the offset belongs to another stream (`since.offsetEpoch` differs from `current.epoch`, or the offset is
 * ahead of `current.offset`); `Infinity` when the client gave neither (only `positions` count).
 */
export function resumeFromOffset(since: PatternSince, current: { offset: number; epoch: string }): number {
  const offset = since.offset;
  if (since.offsetEpoch !== undefined && since.offsetEpoch !== current.epoch) return 0;
  if (offset === undefined) return Infinity;
  return offset > current.offset ? 0 : offset;
}

/** A held message, linked in its topic's list and in the store's. */
interface HeldEntry {
  readonly message: PublishedMessage;
  readonly history: TopicHistory;
  /** {@link historyEntryBytes} of the message. */
  readonly bytes: number;
  /** The topic's next (newer) held message. */
  next: HeldEntry | null;
  /** Neighbours in the store's publication order. */
  older: HeldEntry | null;
  newer: HeldEntry | null;
}

interface TopicHistory {
  topic: string;
  epoch: string;
  seq: number;
  /** Held messages, oldest first (linked by `next`). */
  first: HeldEntry | null;
  last: HeldEntry | null;
  /** Number and bytes of the held messages. */
  count: number;
  bytes: number;
  /** The seq and tenant offset of the newest message dropped from the history (0 when none). */
  droppedSeq: number;
  droppedOffset: number;
  /** Tenant offset when this epoch began. */
  startOffset: number;
}

interface TenantHistory {
  offset: number;
  topics: Map<string, TopicHistory>;
}

/** A new random epoch id: 8 bytes, base64url. */
export function newEpoch(): string {
  return randomBytes(8).toString('base64url');
}

/**
 * Sequence numbers and bounded history for every (tenant, topic). Synchronous; a broker adapter wraps the same
 * semantics around its own store.
 */
export class HistoryStore {
  readonly size: number;
  readonly ttl: number;
  readonly maxTopics: number;
  readonly maxBytes: number;
  readonly maxTopicBytes: number;
  private readonly tenants = new Map<string, TenantHistory>();
  /** Every topic history, least recently published first (a Map keeps insertion order; re-inserted on publish). */
  private readonly lru = new Map<TopicHistory, string>();
  private readonly now: () => number;
  private streamEpoch = newEpoch();
  /** Oldest and newest held message of the whole store (publication order). */
  private oldest: HeldEntry | null = null;
  private newest: HeldEntry | null = null;
  private heldBytes = 0;
  private heldCount = 0;

  constructor(options: HistoryOptions = {}, now: () => number = Date.now) {
    this.size = nonNegative('history.size', options.size ?? HISTORY_DEFAULTS.size);
    this.ttl = nonNegative('history.ttl', options.ttl ?? HISTORY_DEFAULTS.ttl);
    this.maxTopics = nonNegative('history.maxTopics', options.maxTopics ?? HISTORY_DEFAULTS.maxTopics);
    this.maxBytes = nonNegative('history.maxBytes', options.maxBytes ?? HISTORY_DEFAULTS.maxBytes);
    this.maxTopicBytes = nonNegative('history.maxTopicBytes', options.maxTopicBytes ?? HISTORY_DEFAULTS.maxTopicBytes);
    this.now = now;
  }

  /** Number of topics with a stream (sequence counter) held. */
  get topicCount(): number {
    return this.lru.size;
  }

  /** Bytes of the held messages, as counted by {@link historyEntryBytes} (what {@link HistoryOptions.maxBytes} bounds). */
  get bytes(): number {
    return this.heldBytes;
  }

  /** Number of held messages, all topics. */
  get messageCount(): number {
    return this.heldCount;
  }

  private tenant(name: string): TenantHistory {
    let t = this.tenants.get(name);
    if (t === undefined) {
      t = { offset: 0, topics: new Map() };
      this.tenants.set(name, t);
    }
    return t;
  }

  /** Assigns the next seq (and the tenant offset) to a message and keeps it. */
  append(tenant: string, topic: string, type: string, data: string, ts = this.now()): PublishedMessage {
    const t = this.tenant(tenant);
    let h = t.topics.get(topic);
    if (h === undefined) {
      h = { topic, epoch: newEpoch(), seq: 0, first: null, last: null, count: 0, bytes: 0, droppedSeq: 0, droppedOffset: 0, startOffset: t.offset };
      t.topics.set(topic, h);
      if (this.lru.size >= this.maxTopics) this.evictOldestTopic();
    } else {
      this.lru.delete(h);
    }
    this.lru.set(h, tenant);
    const message: PublishedMessage = { tenant, topic, type, data, seq: ++h.seq, epoch: h.epoch, ts, offset: ++t.offset };
    if (this.size > 0) {
      this.hold(h, message);
      if (h.count > this.size) this.dropOldest(h);
      while (h.bytes > this.maxTopicBytes) this.dropOldest(h);
      while (this.heldBytes > this.maxBytes) this.dropOldest(this.oldest!.history);
    } else {
      h.droppedSeq = message.seq;
      h.droppedOffset = message.offset;
    }
    // Each message expires once, so this costs O(1) per publication amortized.
    this.sweep(ts);
    this.expire(h, ts);
    return message;
  }

  /** Links a new message at the end of its topic's list and of the store's. */
  private hold(h: TopicHistory, message: PublishedMessage): void {
    const entry: HeldEntry = { message, history: h, bytes: historyEntryBytes(message.topic, message.type, message.data), next: null, older: this.newest, newer: null };
    if (h.last === null) h.first = entry;
    else h.last.next = entry;
    h.last = entry;
    h.count++;
    h.bytes += entry.bytes;
    if (this.newest === null) this.oldest = entry;
    else this.newest.newer = entry;
    this.newest = entry;
    this.heldCount++;
    this.heldBytes += entry.bytes;
  }

  /** Unlinks an entry from the store's list and counts it out (not from its topic's list). */
  private release(entry: HeldEntry): void {
    if (entry.older === null) this.oldest = entry.newer;
    else entry.older.newer = entry.newer;
    if (entry.newer === null) this.newest = entry.older;
    else entry.newer.older = entry.older;
    entry.older = entry.newer = entry.next = null;
    this.heldCount--;
    this.heldBytes -= entry.bytes;
  }

  /** Drops the topic's oldest held message, recording it as the newest dropped one (the exact gap). */
  private dropOldest(h: TopicHistory): void {
    const entry = h.first!;
    h.first = entry.next;
    if (h.first === null) h.last = null;
    h.count--;
    h.bytes -= entry.bytes;
    h.droppedSeq = entry.message.seq;
    h.droppedOffset = entry.message.offset;
    this.release(entry);
  }

  private expire(h: TopicHistory, now: number): void {
    const limit = now - this.ttl;
    while (h.first !== null && h.first.message.ts < limit) this.dropOldest(h);
  }

  /**
   * Drops every message older than the TTL, in all topics, and returns how many. Walks the store's messages in
   * publication order and stops at the first one that has not expired, so it costs what it drops (a call with
   * nothing expired is O(1)). A topic left without messages keeps its stream (epoch, seq, what was dropped), so a
   * resume still reports the exact gap; {@link HistoryOptions.maxTopics} bounds those. (Should the clock step
   * back, messages published after a later-stamped one wait for it to expire, or for their topic to be read.)
   */
  sweep(now: number = this.now()): number {
    const limit = now - this.ttl;
    let dropped = 0;
    for (let e = this.oldest; e !== null && e.message.ts < limit; e = this.oldest) {
      // The store's oldest message is its topic's oldest too: both lists are in publication order.
      this.dropOldest(e.history);
      dropped++;
    }
    return dropped;
  }

  private evictOldestTopic(): void {
    const first = this.lru.entries().next();
    if (first.done) return;
    const [h, tenant] = first.value;
    this.lru.delete(h);
    const t = this.tenants.get(tenant)!;
    t.topics.delete(h.topic);
    for (let e = h.first; e !== null; ) {
      const next = e.next;
      this.release(e);
      e = next;
    }
    h.first = h.last = null;
    h.count = 0;
    h.bytes = 0;
  }

  /**
   * The current position of a topic. A topic never published (or forgotten) has no epoch yet: `{ epoch: '', seq: 0 }`
   * (resuming from seq 0 replays whatever epoch exists then).
   */
  position(tenant: string, topic: string): StreamPosition {
    const h = this.tenants.get(tenant)?.topics.get(topic);
    return h === undefined ? { epoch: '', seq: 0 } : { epoch: h.epoch, seq: h.seq };
  }

  /** The tenant's current stream offset (0 before any publication). */
  offset(tenant: string): number {
    return this.tenants.get(tenant)?.offset ?? 0;
  }

  /**
   * The epoch of the tenant offsets: random per store, new after {@link HistoryStore.clear}. An offset is only
   * meaningful together with it (see {@link PatternSince.offsetEpoch}).
   */
  get offsetEpoch(): string {
    return this.streamEpoch;
  }

  /**
   * What a client that saw up to `since` on an exact topic has missed. A different epoch means the stream it knew
   * is gone: everything of the current epoch is replayed, and the client is told its old epoch cannot be resumed
   * (a gap over the current epoch's dropped part, if any, and `recovered: false`).
   */
  since(tenant: string, topic: string, since: StreamPosition): ResumeResult {
    const h = this.tenants.get(tenant)?.topics.get(topic);
    if (h === undefined) {
      // Unknown topic: nothing was published since the hub (or its history) started; a different epoch is lost.
      return { messages: [], gaps: [], recovered: since.seq === 0 };
    }
    this.expire(h, this.now());
    const sameEpoch = since.epoch === h.epoch;
    const after = sameEpoch ? Math.min(Math.max(0, Math.floor(since.seq)), h.seq) : 0;
    return this.replay(tenant, h, after, !sameEpoch && since.seq > 0);
  }

  private replay(tenant: string, h: TopicHistory, after: number, epochLost: boolean): ResumeResult {
    const gaps: Gap[] = [];
    const messages: PublishedMessage[] = [];
    if (after < h.droppedSeq) gaps.push({ tenant, topic: h.topic, epoch: h.epoch, from: after + 1, to: h.droppedSeq });
    for (let e = h.first; e !== null; e = e.next) if (e.message.seq > after) messages.push(e.message);
    return { messages, gaps, recovered: gaps.length === 0 && !epochLost };
  }

  /**
   * What a wildcard subscription missed: for each topic of the tenant with a stream that matches the pattern (a
   * walk over the tenant's topics: resume is rare, publishing never does this), from its
   * position in `since.positions`, or — for a topic the client has no position for — from the tenant offset
   * `since.offset` (from 0 when that offset is of another offset epoch: {@link resumeFromOffset}). Messages are
   * returned in publication order (tenant offset) across topics.
   */
  sincePattern(tenant: string, pattern: string, since: PatternSince): ResumeResult {
    const t = this.tenants.get(tenant);
    const result: ResumeResult = { messages: [], gaps: [], recovered: true };
    if (t === undefined) return result;
    const fromOffset = resumeFromOffset(since, { offset: t.offset, epoch: this.streamEpoch });
    const positions = since.positions ?? {};
    const now = this.now();
    for (const h of t.topics.values()) {
      if (!matches(pattern, h.topic)) continue;
      const topic = h.topic;
      this.expire(h, now);
      const known = Object.hasOwn(positions, topic) ? positions[topic] : undefined;
      let part: ResumeResult;
      if (known !== undefined) {
        const sameEpoch = known.epoch === h.epoch;
        part = this.replay(tenant, h, sameEpoch ? Math.min(Math.max(0, Math.floor(known.seq)), h.seq) : 0, !sameEpoch && known.seq > 0);
      } else if (fromOffset === Infinity || h.seq === 0) {
        continue;
      } else if (h.startOffset >= fromOffset) {
        // The epoch began after the client's offset: all of it is new to the client.
        part = this.replay(tenant, h, 0, false);
      } else {
        // Messages after the client's offset: the held ones are exact; for dropped ones, the first seq after the
        // offset is the first held entry after it, or (when all were dropped) known only as "after droppedSeq's
        // predecessor that the offset covered" — we report the range that cannot be ruled out.
        let after = 0;
        for (let e = h.first; e !== null; e = e.next) {
          if (e.message.offset > fromOffset) break;
          after = e.message.seq;
        }
        if (after === 0 && h.droppedOffset <= fromOffset) after = h.droppedSeq;
        part = this.replay(tenant, h, after, false);
      }
      for (const m of part.messages) result.messages.push(m);
      for (const g of part.gaps) result.gaps.push(g);
      if (!part.recovered) result.recovered = false;
    }
    result.messages.sort((a, b) => a.offset - b.offset);
    return result;
  }

  /** Forgets everything (a restart): every topic gets a new epoch on its next publication. */
  clear(): void {
    this.tenants.clear();
    this.lru.clear();
    this.oldest = this.newest = null;
    this.heldBytes = 0;
    this.heldCount = 0;
    this.streamEpoch = newEpoch();
  }
}

function nonNegative(name: string, value: number): number {
  if (typeof value !== 'number' || !(value >= 0)) throw new RangeError(`${name} must be a non-negative number, got ${String(value)}`);
  return value;
}
