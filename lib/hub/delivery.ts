/**
 * Delivery: the only code in the hub that writes to a client's socket. Live topic fan-out, user, connection and
 * broadcast messages, resume replays, `history` answers, gap reports, acks, errors, pongs and pings all go through
 * one {@link Delivery}, which owns each connection's outbound budget (`limits.maxBufferedBytes`) and the one
 * slow-consumer policy:
 *
 * - **messages** (topic, user, connection, broadcast): when the connection's unsent bytes plus the frame would pass
 *   the budget, `disconnect` closes it with 1008 (destroyed 1 s later) and `drop` skips the message; for topic
 *   messages the skipped sequence numbers are reported as an exact `gap` once the connection drains;
 * - **replies** (acks, errors, pongs, presence events, gap reports, `history` answers, pings) may use 64 KiB beyond
 *   the budget (so a connection being dropped for still gets its acks); past that the connection is closed with
 *   1008 under either policy, since a reply cannot be skipped without leaving the client waiting;
 * - **replays** of a resume are paced: written while the connection's unsent data stays within half the budget
 *   (the other half is left to its live traffic and replies), continued on `drain` (with a 100 ms check as a
 *   backstop), never queued whole. While a subscription replays, its live messages wait in its buffer, which is
 *   bounded by the budget (then the policy applies); when the replay ends, what waited is written the same paced
 *   way, round after round, until nothing waits and the subscription goes live.
 *
 * @module
 */
import { type PreparedMessage, prepare } from '../transport/prepared.js';
import type { WebSocketConnection } from '../transport/connection.js';
import type { HubEnvelope } from './backplane.js';
import { type HubClient, type Replay, STATE_CLOSED, STATE_OPEN, type Subscription } from './client.js';
import type { Gap, PublishedMessage } from './history.js';
import { Histogram } from './histogram.js';
import type { SlowConsumerPolicy } from './options.js';
import { APP_PING, type Dialect, encodeDirect, encodeGap, encodeTopicMessage } from './protocol.js';

/** Bytes that replies may use beyond the outbound budget: 64 KiB. */
export const REPLY_HEADROOM = 64 * 1024;
/** Milliseconds between checks of connections whose replay (or gap flush) waits for room, besides `drain`: 100. */
const STALL_POLL = 100;

/** Counters kept by {@link Delivery} (part of the hub's stats). */
export interface DeliveryCounters {
  messagesOut: number;
  /** Bytes of the frames written (WebSocket frames, as prepared; before compression of replies). */
  bytesOut: number;
  deliveries: number;
  drops: number;
  gapReports: number;
  slowConsumerDisconnects: number;
  replaysRefused: number;
}

/** What {@link Delivery} asks of the hub. */
export interface DeliveryHost {
  /** Closes a client with a code the hub chose, destroying it `killAfter` ms later when it has not closed. */
  close(client: HubClient, code: number, reason: string, killAfter: number): void;
  /** The slow-consumer policy hit a client (for the `slowConsumer` event). */
  slow(client: HubClient, policy: SlowConsumerPolicy, bufferedAmount: number): void;
}

/** The state of the fan-out in progress (one object per hub, reused). */
interface Fanout {
  message: PublishedMessage | null;
  /** Bytes written by the fan-out in progress. */
  bytes: number;
  stamp: number;
  native: PreparedMessage | null;
  nativeSize: number;
  llps: PreparedMessage | null;
  llpsSize: number;
}

/** Frames of one direct message, one per dialect, shared by its recipients. */
export type DirectFrames = Partial<Record<Dialect, PreparedMessage>>;

/** The hub's one writer. See the module documentation for the policy. */
export class Delivery {
  readonly counters: DeliveryCounters = { messagesOut: 0, bytesOut: 0, deliveries: 0, drops: 0, gapReports: 0, slowConsumerDisconnects: 0, replaysRefused: 0 };
  /** Seconds from a topic message's publication (`ts`) to its fan-out's socket writes, per publication delivered. */
  readonly latency = new Histogram();
  /** Replays in progress, over all connections. */
  replaying = 0;
  private readonly max: number;
  /** Unsent bytes up to which a replay writes: half the budget. */
  private readonly replayShare: number;
  private readonly drop: boolean;
  private readonly compress: boolean;
  private readonly host: DeliveryHost;
  private stampCounter = 0;
  private readonly fanQueue: Array<{ message: PublishedMessage; sets: Array<ReadonlySet<Subscription>> }> = [];
  private readonly fanout: Fanout = { message: null, bytes: 0, stamp: 0, native: null, nativeSize: 0, llps: null, llpsSize: 0 };
  /** Connections waiting for room (a replay or gaps to flush), checked every {@link STALL_POLL} ms. */
  private readonly stalled = new Set<HubClient>();
  private stallTimer: NodeJS.Timeout | null = null;
  /** The `drain` listener (the connection's `data` is its client). */
  private readonly onDrain: (this: WebSocketConnection) => void;

  constructor(options: { maxBufferedBytes: number; slowConsumer: SlowConsumerPolicy; compress: boolean }, host: DeliveryHost) {
    this.max = options.maxBufferedBytes;
    this.replayShare = options.maxBufferedBytes / 2;
    this.drop = options.slowConsumer === 'drop';
    this.compress = options.compress;
    this.host = host;
    const delivery = this;
    this.onDrain = function onDrain(this: WebSocketConnection): void {
      const client = this.data as HubClient;
      client.drainArmed = false;
      delivery.resume(client);
    };
  }

  // ─── Replies ──────────────────────────────────────────────────────────────────────────────────────────────

  /** A reply or control message (ack, error, pong, ping, presence event, `history` answer). False when not sent. */
  reply(client: HubClient, text: string): boolean {
    if (client.state === STATE_CLOSED) return false;
    const c = client.connection;
    const buffered = c.bufferedAmount;
    if (buffered > 0 && buffered + text.length > this.max + REPLY_HEADROOM) {
      this.disconnect(client);
      return false;
    }
    c.send(text);
    this.counters.messagesOut++;
    this.counters.bytesOut += text.length + 4;
    return true;
  }

  /** The heartbeat's pings: the protocol ping, and the app-level `{"type":"ping"}` to clients that get it. */
  ping(client: HubClient): void {
    client.connection.ping();
    if (client.appPing) this.reply(client, APP_PING);
  }

  /** A `gap` report (a reply). */
  gap(client: HubClient, dialect: Dialect, gap: Gap): void {
    if (this.reply(client, encodeGap(dialect, gap))) this.counters.gapReports++;
  }

  // ─── Topic messages ───────────────────────────────────────────────────────────────────────────────────────

  /**
   * Fan-out of one topic message to the subscription sets that match it (from the tries). Per recipient: the set
   * iteration, a de-duplication stamp, the set-up check, one `bufferedAmount` comparison and `sendPrepared`; the
   * frame (one per dialect), its size and the counters are handled once per publication. A message handed over
   * while a fan-out runs (a listener that publishes synchronously) goes after it.
   */
  publish(m: PublishedMessage, sets: Array<ReadonlySet<Subscription>>): void {
    if (this.fanout.message !== null) {
      this.fanQueue.push({ message: m, sets: sets.slice() });
      return;
    }
    this.fanOutMessage(m, sets);
    while (this.fanQueue.length > 0) {
      const next = this.fanQueue.shift()!;
      this.fanOutMessage(next.message, next.sets);
    }
  }

  private fanOutMessage(m: PublishedMessage, sets: Array<ReadonlySet<Subscription>>): void {
    const fan = this.fanout;
    fan.message = m;
    fan.stamp = sets.length > 1 ? ++this.stampCounter : 0;
    let delivered = 0;
    try {
      const dedupe = sets.length > 1;
      for (let i = 0; i < sets.length; i++) delivered += this.fanOut(sets[i], fan, dedupe);
    } finally {
      fan.message = null;
      fan.native = null;
      fan.llps = null;
      this.counters.deliveries += delivered;
      this.counters.messagesOut += delivered;
      this.counters.bytesOut += fan.bytes;
      fan.bytes = 0;
      if (delivered > 0) this.latency.observe(Math.max(0, Date.now() - m.ts) / 1000);
    }
  }

  private fanOut(set: ReadonlySet<Subscription>, fan: Fanout, dedupe: boolean): number {
    const m = fan.message!;
    const stamp = fan.stamp;
    const max = this.max;
    const drop = this.drop;
    let delivered = 0;
    // Only the subscription and its connection are touched per recipient, unless several pattern sets matched
    // (then the client carries the de-duplication stamp) or the policy is `drop` (then its gap record is checked).
    for (const sub of set) {
      if (sub.filter !== null && !sub.filter(m.topic)) continue;
      if (dedupe) {
        const client = sub.client;
        if (client.stamp === stamp) continue;
        if (sub.buffer === null) client.stamp = stamp;
      }
      if (sub.buffer !== null) {
        this.hold(sub, m);
        continue;
      }
      let frame: PreparedMessage;
      let size: number;
      if (sub.dialect === 'native') {
        frame = fan.native ??= this.prepareTopic('native', m, fan);
        size = fan.nativeSize;
      } else {
        frame = fan.llps ??= this.prepareTopic('llps', m, fan);
        size = fan.llpsSize;
      }
      const connection = sub.connection;
      if (connection.bufferedAmount + size > max) {
        if (drop) this.recordDrop(sub.client, sub.dialect, m);
        else this.disconnect(sub.client);
        continue;
      }
      if (drop && sub.client.gaps !== null) this.flushGaps(sub.client);
      connection.sendPrepared(frame);
      fan.bytes += size;
      delivered++;
    }
    return delivered;
  }

  private prepareTopic(dialect: Dialect, m: PublishedMessage, fan: Fanout): PreparedMessage {
    const frame = prepare(encodeTopicMessage(dialect, m), { compress: this.compress });
    if (dialect === 'native') fan.nativeSize = frameSize(frame);
    else fan.llpsSize = frameSize(frame);
    return frame;
  }

  /**
   * Keeps a live message (or a backplane gap) for a subscription that is being set up or replaying, within the
   * connection's budget: past it, the policy applies (`drop`: recorded as a gap, reported once the replays end).
   */
  hold(sub: Subscription, entry: PublishedMessage | Gap): void {
    if (sub.filter !== null && !sub.filter(entry.topic)) return;
    const buffer = sub.buffer!;
    if (isGap(entry)) {
      buffer.push(entry);
      return;
    }
    const size = entry.data.length + entry.type.length + entry.topic.length + 96;
    if (sub.bufferBytes + size > this.max) {
      if (this.drop) this.recordDrop(sub.client, sub.dialect, entry);
      else this.disconnect(sub.client);
      return;
    }
    buffer.push(entry);
    sub.bufferBytes += size;
  }

  // ─── Direct messages ──────────────────────────────────────────────────────────────────────────────────────

  /** A message without a sequence number for one client (user, connection, broadcast, `client.send`). */
  direct(client: HubClient, envelope: HubEnvelope, frames: DirectFrames | null): boolean {
    if (client.state !== STATE_OPEN) return false;
    const dialect = client.dialect;
    const frame = frames === null ? prepare(encodeDirect(dialect, envelope.type, envelope.data)) : (frames[dialect] ??= prepare(encodeDirect(dialect, envelope.type, envelope.data)));
    if (client.connection.bufferedAmount + frameSize(frame) > this.max) {
      if (this.drop) {
        this.counters.drops++;
        this.noteDrop(client);
      } else this.disconnect(client);
      return false;
    }
    client.connection.sendPrepared(frame);
    this.counters.messagesOut++;
    this.counters.bytesOut += frameSize(frame);
    this.counters.deliveries++;
    return true;
  }

  // ─── Replays ──────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Replays entries (messages and gap reports, in order) to `sub`'s connection, paced by its drain, then calls
   * `done` (which may start the next round: what arrived live meanwhile). Replays of one connection run one after
   * the other. A replay of a subscription cancelled meanwhile stops (without `done`).
   */
  replay(sub: Subscription, entries: ReadonlyArray<PublishedMessage | Gap>, done: () => void): void {
    const client = sub.client;
    const r: Replay = { sub, entries, index: 0, done };
    this.replaying++;
    if (client.replays !== null) {
      client.replays.push(r);
      return;
    }
    client.replays = [r];
    this.pump(client);
  }

  /** Continues a connection's replays while it has room; then flushes recorded gaps. */
  pump(client: HubClient): void {
    for (;;) {
      const list = client.replays;
      if (list === null) break;
      if (client.state === STATE_CLOSED) return this.release(client);
      if (list.length === 0) {
        client.replays = null;
        break;
      }
      const r = list[0];
      if (!r.sub.cancelled) {
        const c = client.connection;
        const share = this.replayShare;
        while (r.index < r.entries.length) {
          const entry = r.entries[r.index];
          if (isGap(entry)) {
            this.gap(client, r.sub.dialect, entry);
            r.index++;
            continue;
          }
          const frame = prepare(encodeTopicMessage(r.sub.dialect, entry));
          const buffered = c.bufferedAmount;
          const size = frameSize(frame);
          if (buffered > 0 && buffered + size > share) return this.stall(client);
          c.sendPrepared(frame);
          this.counters.messagesOut++;
          this.counters.bytesOut += size;
          this.counters.deliveries++;
          r.index++;
        }
      }
      list.shift();
      this.replaying--;
      if (!r.sub.cancelled && client.state === STATE_OPEN) r.done();
    }
    this.stalled.delete(client);
    // Caught up: ends a drop episode (direct drops record no gaps) and sends the gaps recorded, if any.
    this.flushGaps(client);
  }

  /** Forgets a closed connection's replays and waits. */
  release(client: HubClient): void {
    if (client.replays !== null) {
      this.replaying -= client.replays.length;
      client.replays = null;
    }
    client.gaps = null;
    this.stalled.delete(client);
    if (client.drainArmed) {
      client.drainArmed = false;
      client.connection.off('drain', this.onDrain);
    }
  }

  /** Waits for room: the connection's `drain`, and the shared poll as a backstop. */
  private stall(client: HubClient): void {
    if (!client.drainArmed) {
      client.drainArmed = true;
      client.connection.once('drain', this.onDrain);
    }
    this.stalled.add(client);
    if (this.stallTimer === null) {
      this.stallTimer = setInterval(() => this.poll(), STALL_POLL);
      this.stallTimer.unref();
    }
  }

  private poll(): void {
    // Over a copy: a replay resumed here may stall again at once (its next frame does not fit yet), which deletes
    // and re-adds its client; iterating the Set itself would visit it again, forever.
    for (const client of [...this.stalled]) {
      if (client.state === STATE_CLOSED) {
        this.release(client);
        continue;
      }
      if (client.connection.bufferedAmount <= this.replayShare / 2) this.resume(client);
    }
    if (this.stalled.size === 0 && this.stallTimer !== null) {
      clearInterval(this.stallTimer);
      this.stallTimer = null;
    }
  }

  /** @internal the connection drained (or the poll found room). */
  resume(client: HubClient): void {
    this.stalled.delete(client);
    if (client.drainArmed) {
      client.drainArmed = false;
      client.connection.off('drain', this.onDrain);
    }
    if (client.replays !== null) this.pump(client);
    else this.flushGaps(client);
  }

  // ─── Slow consumers ───────────────────────────────────────────────────────────────────────────────────────

  private disconnect(client: HubClient): void {
    if (client.closeCode !== 0) return;
    this.counters.slowConsumerDisconnects++;
    this.host.slow(client, 'disconnect', client.connection.bufferedAmount);
    this.host.close(client, 1008, 'slow consumer: too much unsent data', 1000);
  }

  /** Records a topic message skipped under policy `drop`, as a contiguous range per topic. */
  private recordDrop(client: HubClient, dialect: Dialect, m: PublishedMessage): void {
    this.counters.drops++;
    this.noteDrop(client);
    const gaps = (client.gaps ??= new Map());
    const key = `${m.tenant}\0${m.topic}`;
    const gap = gaps.get(key);
    if (gap !== undefined && gap.epoch === m.epoch && gap.to + 1 === m.seq) gap.to = m.seq;
    else {
      if (gap !== undefined) this.gap(client, gap.dialect, gap);
      gaps.set(key, { tenant: m.tenant, topic: m.topic, epoch: m.epoch, from: m.seq, to: m.seq, dialect });
    }
  }

  /** The first drop since the connection last caught up: tell the hub, and wait for room to report the gaps. */
  private noteDrop(client: HubClient): void {
    if (client.dropping) return;
    client.dropping = true;
    this.host.slow(client, 'drop', client.connection.bufferedAmount);
    this.stall(client);
  }

  /**
   * The connection caught up (it has room and no replay runs): sends the gaps recorded under policy `drop`, and the
   * next drop will be reported again.
   */
  flushGaps(client: HubClient): void {
    if (client.replays !== null) return;
    client.dropping = false;
    const gaps = client.gaps;
    if (gaps === null || client.state !== STATE_OPEN) return;
    client.gaps = null;
    for (const g of gaps.values()) this.gap(client, g.dialect, g);
  }
}

/** Bytes of a prepared frame. */
export function frameSize(message: PreparedMessage): number {
  const f = message.frame;
  return Array.isArray(f) ? f[0].length + f[1].length : f.length;
}

/** Whether a buffered entry is a backplane gap report. */
export function isGap(entry: PublishedMessage | Gap): entry is Gap {
  // Not by `from`: a message published by a client has a `from` too (its publisher).
  return (entry as PublishedMessage).seq === undefined;
}
