/**
 * Per-topic sequence numbers, epochs and bounded history (by count, by age and by bytes), and resume over them:
 * what a client that saw up to some position has missed, as the messages still held plus the exact ranges no longer
 * held — computed by the rules of resume-rules.ts, shared with the broker adapters, over a view of a topic's list.
 *
 * Every held message is in two lists: its topic's (oldest first) and the store's (publication order across all
 * topics and tenants). Whatever drops a message — the count, the age, a byte cap, {@link HistoryStore.sweep} — drops
 * its topic's oldest, which is why what is lost is always an exact range (`droppedSeq`); the store's list makes
 * expiry and the store-wide byte cap cost what they drop, not a walk over every topic. A dropped message is unlinked
 * from both lists at once, so nothing of the store keeps it alive.
 *
 * Used by {@link MemoryBackplane}; adapters for brokers keep the same semantics in their store. Re-exports the
 * stream types (positions, messages, gaps) from resume-rules.ts, where they are defined.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { type PatternSince, type PublishedMessage, type ResumeResult, type ResumeView, resumePattern, resumeTopic, type StreamPosition } from './resume-rules.js';
import { matches } from './topics.js';

export { GAP_UNKNOWN_END, resumeFromOffset } from './resume-rules.js';
export type { Gap, PatternSince, PublishedMessage, ResumeResult, StreamPosition } from './resume-rules.js';

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
  append(tenant: string, topic: string, type: string, data: string, ts = this.now(), from?: string): PublishedMessage {
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
    if (from !== undefined) message.from = from;
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
   * What a client that saw up to `since` on an exact topic has missed ({@link resumeTopic}), after dropping what
   * expired.
   */
  since(tenant: string, topic: string, since: StreamPosition): ResumeResult {
    const h = this.tenants.get(tenant)?.topics.get(topic);
    if (h !== undefined) this.expire(h, this.now());
    return resumeTopic(tenant, topic, h === undefined ? null : viewOf(h), since);
  }

  /**
   * What a wildcard subscription missed ({@link resumePattern}) over every topic of the tenant with a stream that
   * matches the pattern (a walk over the tenant's topics: resume is rare, publishing never does this), each after
   * dropping what expired. Only topics held are shown: a position in a topic this store does not hold (never
   * published, or forgotten beyond {@link HistoryOptions.maxTopics}) is ignored.
   */
  sincePattern(tenant: string, pattern: string, since: PatternSince): ResumeResult {
    const t = this.tenants.get(tenant);
    return resumePattern(tenant, this.matching(t, pattern, since, this.now()), since, { offset: t?.offset ?? 0, epoch: this.streamEpoch });
  }

  /**
   * The views of the tenant's topics matching `pattern`, each expired at `now` when reached; then, as `null`, the
   * matching topics the client has a position for that the store no longer has a stream for (forgotten by
   * `maxTopics` or a restart): a position past 0 in them is a loss, as for an exact topic and on the brokers.
   */
  private *matching(t: TenantHistory | undefined, pattern: string, since: PatternSince, now: number): Generator<[string, ResumeView | null]> {
    if (t !== undefined) {
      for (const h of t.topics.values()) {
        if (!matches(pattern, h.topic)) continue;
        this.expire(h, now);
        yield [h.topic, viewOf(h)];
      }
    }
    for (const topic of Object.keys(since.positions ?? {})) {
      if (t?.topics.has(topic) !== true && matches(pattern, topic)) yield [topic, null];
    }
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

/** A topic's history as the resume rules read it (made per resume; its messages are read from the topic's list). */
function viewOf(h: TopicHistory): ResumeView {
  return { epoch: h.epoch, seq: h.seq, droppedSeq: h.droppedSeq, droppedOffset: h.droppedOffset, startOffset: h.startOffset, held: () => heldMessages(h) };
}

function* heldMessages(h: TopicHistory): Generator<PublishedMessage> {
  for (let e = h.first; e !== null; e = e.next) yield e.message;
}

function nonNegative(name: string, value: number): number {
  if (typeof value !== 'number' || !(value >= 0)) throw new RangeError(`${name} must be a non-negative number, got ${String(value)}`);
  return value;
}
