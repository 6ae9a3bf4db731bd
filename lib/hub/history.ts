/**
 * Per-topic sequence numbers, epochs and bounded history (by count and by age), and the resume computation: what a
 * client that saw up to some position has missed, as the messages still held plus the exact ranges no longer held.
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
} as const;

/** How much history a store keeps. */
export interface HistoryOptions {
  /** Messages kept per topic; 0 keeps none (sequence numbers still count). Default: 100. */
  size?: number;
  /** Milliseconds a message stays in the history. Default: 300,000 (5 min). */
  ttl?: number;
  /** Topics whose history is kept; beyond it the least recently published one is forgotten (its epoch ends). Default: 100,000. */
  maxTopics?: number;
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

interface TopicHistory {
  topic: string;
  epoch: string;
  seq: number;
  /** Held messages, oldest first, from index `head`. */
  entries: PublishedMessage[];
  head: number;
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
  private readonly tenants = new Map<string, TenantHistory>();
  /** Every topic history, least recently published first (a Map keeps insertion order; re-inserted on publish). */
  private readonly lru = new Map<TopicHistory, string>();
  private readonly now: () => number;
  private streamEpoch = newEpoch();

  constructor(options: HistoryOptions = {}, now: () => number = Date.now) {
    this.size = nonNegative('history.size', options.size ?? HISTORY_DEFAULTS.size);
    this.ttl = nonNegative('history.ttl', options.ttl ?? HISTORY_DEFAULTS.ttl);
    this.maxTopics = nonNegative('history.maxTopics', options.maxTopics ?? HISTORY_DEFAULTS.maxTopics);
    this.now = now;
  }

  /** Number of topics with a stream (sequence counter) held. */
  get topicCount(): number {
    return this.lru.size;
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
      h = { topic, epoch: newEpoch(), seq: 0, entries: [], head: 0, droppedSeq: 0, droppedOffset: 0, startOffset: t.offset };
      t.topics.set(topic, h);
      if (this.lru.size >= this.maxTopics) this.evictOldestTopic();
    } else {
      this.lru.delete(h);
    }
    this.lru.set(h, tenant);
    const message: PublishedMessage = { tenant, topic, type, data, seq: ++h.seq, epoch: h.epoch, ts, offset: ++t.offset };
    if (this.size > 0) {
      h.entries.push(message);
      if (h.entries.length - h.head > this.size) this.drop(h, 1);
    } else {
      h.droppedSeq = message.seq;
      h.droppedOffset = message.offset;
    }
    this.expire(h, ts);
    return message;
  }

  private drop(h: TopicHistory, n: number): void {
    const last = h.entries[h.head + n - 1];
    h.droppedSeq = last.seq;
    h.droppedOffset = last.offset;
    h.head += n;
    // Compact once the dead prefix is as long as the live part.
    if (h.head >= 32 && h.head * 2 >= h.entries.length) {
      h.entries = h.entries.slice(h.head);
      h.head = 0;
    }
  }

  private expire(h: TopicHistory, now: number): void {
    const limit = now - this.ttl;
    let n = 0;
    while (h.head + n < h.entries.length && h.entries[h.head + n].ts < limit) n++;
    if (n > 0) this.drop(h, n);
  }

  private evictOldestTopic(): void {
    const first = this.lru.entries().next();
    if (first.done) return;
    const [h, tenant] = first.value;
    this.lru.delete(h);
    const t = this.tenants.get(tenant)!;
    t.topics.delete(h.topic);
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
    for (let i = h.head; i < h.entries.length; i++) if (h.entries[i].seq > after) messages.push(h.entries[i]);
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
        for (let i = h.head; i < h.entries.length; i++) {
          if (h.entries[i].offset > fromOffset) break;
          after = h.entries[i].seq;
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
    this.streamEpoch = newEpoch();
  }
}

function nonNegative(name: string, value: number): number {
  if (typeof value !== 'number' || !(value >= 0)) throw new RangeError(`${name} must be a non-negative number, got ${String(value)}`);
  return value;
}
