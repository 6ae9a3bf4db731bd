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
 * - **replays** of a resume are paced: written while the connection has room, continued on `drain` (with a 100 ms
 *   check as a backstop), never queued whole. While a subscription replays, its live messages wait in its buffer,
 *   which is bounded by the same budget (then the policy applies).
 *
 * @module
 */
import { type PreparedMessage, prepare } from '../transport/prepared.js';
import type { WebSocketConnection } from '../transport/connection.js';
import type { HubEnvelope } from './backplane.js';
import { type HubClient, type Replay, STATE_CLOSED, STATE_OPEN, type Subscription } from './client.js';
import type { Gap, PublishedMessage } from './history.js';
import type { SlowConsumerPolicy } from './options.js';
import { type Dialect, encodeDirect, encodeGap, encodeTopicMessage } from './protocol.js';

/** Bytes that replies may use beyond the outbound budget: 64 KiB. */
export const REPLY_HEADROOM = 64 * 1024;
/** Milliseconds between checks of connections whose replay (or gap flush) waits for room, besides `drain`: 100. */
const STALL_POLL = 100;

/** Counters kept by {@link Delivery} (part of the hub's stats). */
export interface DeliveryCounters {
  messagesOut: number;
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
  readonly counters: DeliveryCounters = { messagesOut: 0, deliveries: 0, drops: 0, gapReports: 0, slowConsumerDisconnects: 0, replaysRefused: 0 };
  /** Replays in progress, over all connections. */
  replaying = 0;
  private readonly max: number;
  private readonly drop: boolean;
  private readonly policy: SlowConsumerPolicy;
  private readonly compress: boolean;
  private readonly host: DeliveryHost;
  private stampCounter = 0;
  private readonly fanQueue: Array<{ message: PublishedMessage; sets: Array<ReadonlySet<Subscription>> }> = [];
  private readonly fanout: Fanout = { message: null, stamp: 0, native: null, nativeSize: 0, llps: null, llpsSize: 0 };
  /** Connections waiting for room (a replay or gaps to flush), checked every {@link STALL_POLL} ms. */
  private readonly stalled = new Set<HubClient>();
  private stallTimer: NodeJS.Timeout | null = null;
  /** The `drain` listener (the connection's `data` is its client). */
  private readonly onDrain: (this: WebSocketConnection) => void;

  constructor(options: { maxBufferedBytes: number; slowConsumer: SlowConsumerPolicy; compress: boolean }, host: DeliveryHost) {
    this.max = options.maxBufferedBytes;
    this.policy = options.slowConsumer;
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
    return true;
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

  /** One topic message to one subscription (messages kept while it was set up). */
  topic(sub: Subscription, m: PublishedMessage): void {
    const client = sub.client;
    if (client.state !== STATE_OPEN) return;
    const frame = prepare(encodeTopicMessage(sub.dialect, m), { compress: this.compress });
    if (client.connection.bufferedAmount + frameSize(frame) > this.max) {
      if (this.drop) this.recordDrop(client, sub.dialect, m);
      else this.disconnect(client);
      return;
    }
    if (client.gaps !== null) this.flushGaps(client);
    client.connection.sendPrepared(frame);
    this.counters.messagesOut++;
    this.counters.deliveries++;
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
    this.counters.deliveries++;
    return true;
  }

  // ─── Replays ──────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Replays a resume to `sub`'s connection, paced by its drain: the messages in order, then `gaps`, then `done`
   * (which delivers what arrived live meanwhile). Replays of one connection run one after the other. A replay of
   * a subscription cancelled meanwhile stops (without `done`).
   */
  replay(sub: Subscription, messages: readonly PublishedMessage[], gaps: readonly Gap[], done: () => void): void {
    const client = sub.client;
    const r: Replay = { sub, messages, index: 0, gaps, done };
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
        const max = this.max;
        while (r.index < r.messages.length) {
          const frame = prepare(encodeTopicMessage(r.sub.dialect, r.messages[r.index]));
          const buffered = c.bufferedAmount;
          if (buffered > 0 && buffered + frameSize(frame) > max) return this.stall(client);
          c.sendPrepared(frame);
          this.counters.messagesOut++;
          this.counters.deliveries++;
          r.index++;
        }
        for (const g of r.gaps) this.gap(client, r.sub.dialect, g);
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
    for (const client of this.stalled) {
      if (client.state === STATE_CLOSED) {
        this.release(client);
        continue;
      }
      if (client.connection.bufferedAmount <= this.max / 2) this.resume(client);
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
   * The connection has room again: ends its drop episode (the next drop is a new one: reported, and waited on
   * for room) and sends the recorded gaps (policy `drop`) unless a replay is running (it sends them when done).
   */
  flushGaps(client: HubClient): void {
    client.dropping = false;
    const gaps = client.gaps;
    if (gaps === null || client.state !== STATE_OPEN || client.replays !== null) return;
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
  return (entry as Gap).from !== undefined;
}
