/**
 * What a connection sends, after the protocol core framed it: write batching (the frames of a read or a tick leave
 * in one write) and the one outbound queue that keeps frames in order when they cannot go at once.
 *
 * - **Batching.** The core's output is handed to the socket at the end of the read that produced it, or at the end
 *   of the tick for sends made outside a read (every connection with output is flushed by one shared callback), or
 *   at once past the socket's high-water mark. {@link flushOut} is the one place that writes a batch.
 * - **The queue.** Work waits, in order, behind a message being compressed (permessage-deflate): plain messages,
 *   fragments, control frames, the close frame, the end of TCP. Whole messages sent while the application streams a
 *   fragmented message wait behind the stream's final fragment: they form the queue's tail (the *held* messages),
 *   and what belongs to the stream (fragments, control frames) goes before them.
 * - **Backpressure.** While more than {@link OUTBOUND_DEFAULTS.maxCompressBacklog} bytes wait for the compressor,
 *   reading from the peer pauses (an echo of inflated messages cannot grow the queue faster than zlib drains it).
 *
 * @module
 */
import type { Duplex } from 'node:stream';
import type { Data } from '../core/bytes.js';
import type { DeflateCodec } from '../deflate/codec.js';
import type { SendCallback } from './options.js';

/** Defaults of the outbound queue. */
export const OUTBOUND_DEFAULTS = {
  /** 1 MiB of uncompressed data waiting for the compressor above which reading from the peer pauses. */
  maxCompressBacklog: 1024 * 1024,
} as const;

/** A message to compress, then send with RSV1 set. `done(sent)` (for a promise) is told whether it was written. */
export type CompressJob = { kind: 'compress'; data: Uint8Array; binary: boolean; started: boolean; done?: (ok: boolean) => void; cb?: SendCallback };

/** Work waiting in the outbound queue. `cb` is the sender's callback, run by the connection. */
export type Job =
  | CompressJob
  | { kind: 'send'; data: Data; binary: boolean; done?: (ok: boolean) => void; cb?: SendCallback }
  | { kind: 'prepared'; frame: Buffer | [Buffer, Uint8Array]; done?: (ok: boolean) => void; cb?: SendCallback }
  | { kind: 'fragment'; data: Data; binary: boolean; fin: boolean; cb?: SendCallback }
  /** Frames the core already made (control frames, the close frame): `close` when they include the close frame. */
  | { kind: 'write'; data: Array<Buffer | Uint8Array>; cb: SendCallback | undefined; close: boolean }
  | { kind: 'close'; code?: number; reason?: string }
  | { kind: 'end' };

/** A whole message: the jobs whose bytes count toward {@link OutQueue.queuedBytes}. */
export type WholeJob = Extract<Job, { kind: 'compress' | 'send' | 'prepared' }>;

/** What the queue needs from its connection. */
export interface QueueHost {
  /** Runs a job now (its writes go to the batch). */
  runJob(job: Exclude<Job, CompressJob>): void;
  /** Writes a compressed message now (or, `payload` null: it failed or the connection is gone, nothing). */
  sendCompressed(payload: Buffer | null, job: CompressJob): boolean;
  /** Whether the connection is gone. */
  readonly gone: boolean;
  /** The compression backlog crossed its limit (true) or fell back below it (false). */
  backlog(over: boolean): void;
}

const NO_JOBS: Job[] = [];

/** One connection's outbound queue; created the first time something has to wait. */
export class OutQueue {
  private jobs: Job[] = NO_JOBS;
  /** The tail of `jobs` held behind the application's open fragmented message. */
  private held = 0;
  private queued = 0;
  /** A job is running: its writes go straight to the batch. */
  private running = false;
  private backlogPaused = false;

  constructor(
    private readonly host: QueueHost,
    private readonly codec: DeflateCodec | null,
    private readonly maxCompressBacklog: number = OUTBOUND_DEFAULTS.maxCompressBacklog,
  ) {}

  /** Whether new output must wait in the queue (work waits ahead of the held messages, and none is running). */
  get blocking(): boolean {
    return this.jobs.length > this.held && !this.running;
  }

  /** Bytes of whole messages waiting (uncompressed, or a prepared frame's). */
  get queuedBytes(): number {
    return this.queued;
  }

  /** Whether reading is held back by the compression backlog. */
  get pausesInput(): boolean {
    return this.backlogPaused;
  }

  /** Queues a job at the tail (the application is not streaming a fragmented message). */
  push(job: Job): void {
    this.count(job);
    if (this.jobs === NO_JOBS) this.jobs = [];
    this.jobs.push(job);
    if (this.jobs.length - this.held === 1) this.run();
  }

  /** Holds a whole message behind the application's open fragmented message. */
  hold(job: WholeJob): void {
    this.count(job);
    if (this.jobs === NO_JOBS) this.jobs = [];
    this.jobs.push(job);
    this.held++;
  }

  /** Queues what belongs before the held messages (a fragment, control frames, the close, the end). */
  insert(job: Job): void {
    if (this.jobs === NO_JOBS) this.jobs = [];
    if (this.held === 0) this.jobs.push(job);
    else this.jobs.splice(this.jobs.length - this.held, 0, job);
  }

  /** The application's fragmented message is complete: the held messages follow it. */
  release(): void {
    if (this.held === 0) return;
    this.held = 0;
    if (!this.running) this.run();
  }

  private count(job: Job): void {
    if (job.kind === 'compress' || job.kind === 'send' || job.kind === 'prepared') {
      this.queued += jobBytes(job);
      if (this.codec !== null && this.queued > this.maxCompressBacklog && !this.backlogPaused) {
        this.backlogPaused = true;
        this.host.backlog(true);
      }
    }
  }

  /** Runs queued jobs in order, up to the held ones; a compression suspends the queue until zlib answers. */
  private run(): void {
    const jobs = this.jobs;
    while (jobs.length > this.held) {
      const job = jobs[0];
      if (job.kind === 'compress') {
        if (job.started) return;
        job.started = true;
        this.codec!.compress(job.data, (error, payload) => this.compressed(job, error, payload));
        return;
      }
      jobs.shift();
      if (job.kind === 'send' || job.kind === 'prepared') this.queued -= jobBytes(job);
      this.running = true;
      try {
        this.host.runJob(job);
      } finally {
        this.running = false;
      }
    }
    this.checkBacklog();
  }

  private compressed(job: CompressJob, error: Error | null, payload: Buffer | undefined): void {
    // The connection closed meanwhile: `close()` already handed this job back (a late answer must not settle it twice).
    if (this.jobs[0] !== job) return;
    this.jobs.shift();
    this.queued -= job.data.byteLength;
    let ok: boolean;
    this.running = true;
    try {
      ok = this.host.sendCompressed(error === null && !this.host.gone ? payload! : null, job);
    } finally {
      this.running = false;
    }
    job.done?.(ok);
    this.run();
  }

  private checkBacklog(): void {
    if (this.backlogPaused && this.queued <= this.maxCompressBacklog) {
      this.backlogPaused = false;
      this.host.backlog(false);
    }
  }

  /** The connection closed: every job is dropped and returned (their senders are told once). */
  close(): Job[] {
    const jobs = this.jobs;
    this.jobs = NO_JOBS;
    this.held = 0;
    this.queued = 0;
    return jobs;
  }
}

/** Bytes a whole message holds while queued: its payload (uncompressed), or a prepared frame's header and payload. */
export function jobBytes(job: WholeJob): number {
  if (job.kind === 'prepared') return Array.isArray(job.frame) ? job.frame[0].length + job.frame[1].byteLength : job.frame.length;
  return typeof job.data === 'string' ? job.data.length : (job.data as Uint8Array).byteLength;
}

/**
 * Hands a batch, `out[0, n)`, to the socket: one write, or one corked batch; `done` runs once it is flushed.
 * Returns whether the socket can take more (below its high-water mark). The one place a batch is written.
 */
export function flushOut(socket: Duplex, out: ReadonlyArray<Buffer | Uint8Array | undefined>, n: number, done: ((error?: Error | null) => void) | undefined): boolean {
  if (n === 1) return socket.write(out[0]!, done);
  socket.cork();
  for (let i = 0; i < n - 1; i++) socket.write(out[i]!);
  socket.write(out[n - 1]!, done);
  socket.uncork();
  // Judge by what is left once the batch went out (a corked write reports the whole batch as pending).
  return socket.writableLength < socket.writableHighWaterMark;
}

/** What the end-of-tick flush calls. */
export interface Flushable {
  flushTick(): void;
}

/** Connections with output gathered during the current tick, flushed together at its end. */
let toFlush: Flushable[] = [];

function flushAll(): void {
  const list = toFlush;
  toFlush = [];
  for (let i = 0; i < list.length; i++) list[i].flushTick();
}

/** Flushes `connection` at the end of the tick (one shared callback for every connection with output). */
export function flushAtEndOfTick(connection: Flushable): void {
  toFlush.push(connection);
  if (toFlush.length === 1) process.nextTick(flushAll);
}

function callAll(cbs: SendCallback[], error: Error | undefined): void {
  for (let i = 0; i < cbs.length; i++) {
    if (error === undefined) cbs[i]();
    else cbs[i](error);
  }
}

/** The callback of a batch: runs the callbacks of its messages. */
export function batchDone(cbs: SendCallback[]): (error?: Error | null) => void {
  return (error?: Error | null): void => callAll(cbs, error ?? undefined);
}

/** Calls back with an error on the next tick (never synchronously from inside a send). */
export function failLater(cb: SendCallback, error: Error): void {
  process.nextTick(cb, error);
}

/** Calls every callback with an error on the next tick. */
export function failAll(cbs: SendCallback[], error: Error): void {
  if (cbs.length > 0) process.nextTick(callAll, cbs.slice(), error);
}
