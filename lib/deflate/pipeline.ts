/**
 * The permessage-deflate pipeline of one connection: the outgoing job queue that keeps frames in order behind a
 * compression in progress, and the incoming inflate stage with its backpressure. Transport-agnostic: it talks to
 * its connection through a {@link PipelineHost}.
 *
 * - **Order.** While a message is being compressed, everything sent after it (plain messages, fragments, control
 *   frames the core writes, the close frame, the end of TCP) waits in one queue and goes out in order.
 * - **Inbound backpressure.** While a message inflates, the core stops processing input *and* the host stops
 *   reading the socket, so a peer sending small messages that inflate to large ones cannot make the connection queue
 *   its input without bound: what one connection holds is one read of input, one message being inflated (at most
 *   `maxMessageSize`) and the compressions waiting in its queue. Reading also stops while more than
 *   {@link PIPELINE_DEFAULTS.maxCompressBacklog} bytes wait for the compressor (an echo of inflated messages cannot
 *   grow that queue faster than zlib drains it), and resumes once the backlog is below it.
 *
 * @module
 */
import { protocolError, type ProtocolError } from '../core/errors.js';
import type { Data } from '../core/bytes.js';
import { isValidUtf8 } from '../core/utf8.js';
import type { DeflateCodec } from './codec.js';

/** Defaults of the pipeline. */
export const PIPELINE_DEFAULTS = {
  /** 1 MiB of uncompressed data waiting for the compressor above which reading from the peer pauses. */
  maxCompressBacklog: 1024 * 1024,
} as const;

/**
 * A sender's completion callback, carried with a job for the host to run (no argument once written, an Error when
 * not). The pipeline never calls it.
 */
export type JobCallback = (error?: Error) => void;

/**
 * Outgoing work held behind a compression in progress, to keep frames in order. `done(sent)` (set by the host, e.g.
 * for a promise) is told whether a whole message was written; `cb` is the sender's callback, run by the host.
 */
export type HeldJob =
  | { kind: 'send'; data: Data; binary: boolean; done?: (ok: boolean) => void; cb?: JobCallback }
  | { kind: 'prepared'; frame: Buffer | [Buffer, Uint8Array]; done?: (ok: boolean) => void; cb?: JobCallback }
  | { kind: 'fragment'; data: Data; binary: boolean; fin: boolean; cb?: JobCallback }
  | { kind: 'write'; data: Buffer | [Buffer, Uint8Array]; cb: JobCallback | null }
  | { kind: 'close'; code?: number; reason?: string }
  | { kind: 'end' };

/** A message to compress, then send with RSV1 set. */
export type CompressJob = { kind: 'compress'; data: Uint8Array; binary: boolean; started: boolean; done?: (ok: boolean) => void; cb?: JobCallback };

/** A compression job, or work queued behind one. */
export type Job = HeldJob | CompressJob;

/** A whole message (compressed, plain or prepared): the jobs whose bytes count toward {@link DeflatePipeline.queuedBytes}. */
export type WholeJob = Extract<Job, { kind: 'compress' | 'send' | 'prepared' }>;

/** What the pipeline needs from its connection. */
export interface PipelineHost {
  /**
   * Writes one compressed message (RSV1 set) now, or — `payload` null: the compression failed or the connection is
   * gone — nothing. Runs or fails the job's `cb`; returns whether the message was written.
   */
  sendCompressed(payload: Buffer | null, job: CompressJob): boolean;
  /** Runs work that waited behind a compression; its writes go straight out. */
  runHeld(job: HeldJob): void;
  /** Whether the connection is gone (the socket destroyed or closed). */
  readonly gone: boolean;
  /** Stop processing and reading input (`core.pause()` and the socket). */
  pauseInput(): void;
  /** Start again (process what the core kept, then read the socket). */
  resumeInput(): void;
  /** An inflated (and, for text, UTF-8 checked) message. */
  deliver(data: Buffer, isBinary: boolean): void;
  /** The message could not be inflated: fail the connection with the error's close code. */
  fail(error: ProtocolError): void;
}

const NO_JOBS: Job[] = [];

/** One connection's compression pipeline; created only when permessage-deflate was negotiated. */
export class DeflatePipeline {
  private jobs: Job[] = NO_JOBS;
  private queued = 0;
  /** A held job is running: its writes go straight to the socket. */
  private running = false;
  private inflating = false;
  private backlogPaused = false;

  constructor(
    readonly codec: DeflateCodec,
    private readonly host: PipelineHost,
    private readonly maxCompressBacklog: number = PIPELINE_DEFAULTS.maxCompressBacklog,
  ) {}

  /** Whether new output must be queued (a compression is in progress or work waits behind one). */
  get holding(): boolean {
    return this.jobs.length > 0 && !this.running;
  }

  /** Bytes of messages accepted and waiting for the compressor (or behind it), uncompressed. */
  get queuedBytes(): number {
    return this.queued;
  }

  /** Whether a message is being inflated (input is paused meanwhile). */
  get isInflating(): boolean {
    return this.inflating;
  }

  /**
   * Queues a job: a message for compression (its `done(sent)` once written or not), or work that must wait behind
   * the compressions in progress. Runs it at once when nothing is queued before it.
   */
  enqueue(job: Job): void {
    if (job.kind === 'compress' || job.kind === 'send' || job.kind === 'prepared') this.queued += jobBytes(job);
    if (this.jobs === NO_JOBS) this.jobs = [];
    this.jobs.push(job);
    if (this.queued > this.maxCompressBacklog && !this.backlogPaused) {
      this.backlogPaused = true;
      this.host.pauseInput();
    }
    if (this.jobs.length === 1) this.run();
  }

  /** Runs queued jobs in order; a compression suspends the queue until zlib answers. */
  private run(): void {
    while (this.jobs.length > 0) {
      const job = this.jobs[0];
      if (job.kind === 'compress') {
        if (job.started) return;
        job.started = true;
        this.codec.compress(job.data, (error, payload) => this.compressed(job, error, payload));
        return;
      }
      this.jobs.shift();
      if (job.kind === 'send' || job.kind === 'prepared') this.queued -= jobBytes(job);
      this.running = true;
      try {
        this.host.runHeld(job);
      } finally {
        this.running = false;
      }
    }
    this.checkBacklog();
  }

  private compressed(job: CompressJob, error: Error | null, payload: Buffer | undefined): void {
    // The connection closed meanwhile: `close()` already handed this job back (a late zlib answer must not settle
    // it a second time).
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
      this.host.resumeInput();
    }
  }

  /** Whether reading is held back by this pipeline (a message inflating, or the compression backlog). */
  get pausesInput(): boolean {
    return this.inflating || this.backlogPaused;
  }

  /**
   * A compressed message from the peer: input stops (core and socket) while it inflates, the result is checked
   * (UTF-8 for text) and delivered, then input resumes — the next message, or the close frame, is handled only after.
   */
  inflate(data: Buffer, isBinary: boolean): void {
    this.inflating = true;
    this.host.pauseInput();
    this.codec.decompress(data, (error, out) => {
      this.inflating = false;
      if (this.host.gone) return;
      if (error) return this.host.fail(error);
      if (!isBinary && !isValidUtf8(out!)) return this.host.fail(protocolError('INVALID_UTF8', 'invalid UTF-8 in a compressed text message'));
      this.host.deliver(out!, isBinary);
      this.host.resumeInput();
    });
  }

  /**
   * The connection closed: the codec is released and every queued job dropped. Returns the dropped jobs: the host
   * tells their senders (`done(false)`, `cb` with an Error) — each exactly once, as a compression answering later is
   * ignored.
   */
  close(): Job[] {
    const jobs = this.jobs;
    this.jobs = NO_JOBS;
    this.queued = 0;
    this.codec.close();
    return jobs;
  }
}

/** Bytes a whole message holds while queued: its payload (uncompressed), or a prepared frame's header and payload. */
export function jobBytes(job: WholeJob): number {
  if (job.kind === 'prepared') return Array.isArray(job.frame) ? job.frame[0].length + job.frame[1].byteLength : job.frame.length;
  return typeof job.data === 'string' ? job.data.length : (job.data as Uint8Array).byteLength;
}
