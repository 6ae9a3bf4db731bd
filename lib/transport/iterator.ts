/**
 * Async iteration over a connection's messages (`for await (const { data, isBinary } of connection)`): the queue of
 * messages not yet taken and the loop's waiting `next()` calls. Created by the first `[Symbol.asyncIterator]()`, so
 * a connection that is never iterated holds none of it.
 *
 * @module
 */
import type { Message } from './options.js';

type Waiter = { resolve: (r: IteratorResult<Message>) => void; reject: (e: Error) => void };

/** What the iterator needs from its connection. */
export interface IteratorHost {
  /** Whether the connection has closed (the iteration then ends). */
  readonly closed: boolean;
  /** Messages queued before reading pauses. */
  readonly iteratorHighWaterMark: number;
  /** Reading should pause (true: the queue is full) or may resume (false). */
  iteratorFull(full: boolean): void;
  /** The loop ended early (`break`): messages are no longer queued. */
  iteratorEnded(): void;
}

/** One connection's iteration state. */
export class MessageIterator implements AsyncIterator<Message> {
  private readonly queue: Message[] = [];
  private readonly waiters: Waiter[] = [];
  private full = false;

  constructor(private readonly host: IteratorHost) {}

  /** A message arrived: to the waiting `next()`, or queued (reading pauses once the queue is full). */
  push(data: Buffer, isBinary: boolean): void {
    const waiter = this.waiters.shift();
    if (waiter) return waiter.resolve({ value: { data, isBinary }, done: false });
    this.queue.push({ data, isBinary });
    if (this.queue.length >= this.host.iteratorHighWaterMark && !this.full) {
      this.full = true;
      this.host.iteratorFull(true);
    }
  }

  /** Whether the queue is full (reading is paused for it). */
  get isFull(): boolean {
    return this.full;
  }

  /** The connection closed: waiting `next()` calls end. */
  end(): void {
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<Message>> {
    const value = this.queue.shift();
    if (value !== undefined) {
      if (this.full && this.queue.length < this.host.iteratorHighWaterMark / 2) {
        this.full = false;
        this.host.iteratorFull(false);
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.host.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<Message>> {
    this.full = false;
    this.host.iteratorEnded();
    return Promise.resolve({ value: undefined, done: true });
  }
}
