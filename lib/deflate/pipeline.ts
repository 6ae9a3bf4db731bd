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

/** Outgoing work held behind a compression in progress, to keep frames in order. */
export type HeldJob =
  | { kind: 'send'; data: Data; binary: boolean; done?: (ok: boolean) => void }
  | { kind: 'fragment'; data: Data; binary: boolean; fin: boolean }
  | { kind: 'write'; data: Buffer | [Buffer, Uint8Array] }
  | { kind: 'close'; code?: number; reason?: string }
  | { kind: 'end' };

/** A compression job, or work queued behind one. */
export type Job = HeldJob | { kind: 'compress'; data: Uint8Array; binary: boolean; started: boolean; done?: (ok: boolean) => void };

/** What the pipeline needs from its connection. */
export interface PipelineHost {
  /** Writes one compressed message (RSV1 set) now; false when it cannot be sent any more (closing, closed). */
  sendCompressed(payload: Buffer, binary: boolean): boolean;
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

  /** The job queued last (to attach a completion to it), or undefined when the queue is empty. */
  get lastJob(): Job | undefined {
    return this.jobs[this.jobs.length - 1];
  }

  /** Whether a message is being inflated (input is paused meanwhile). */
  get isInflating(): boolean {
    return this.inflating;
  }

  /** Queues a message for compression; `done(sent)` once it was written (or could not be). Returns the job. */
  compress(data: Uint8Array, binary: boolean): Job {
    const job: Job = { kind: 'compress', data, binary, started: false };
    this.enqueue(job);
    return job;
  }

  /** Queues work behind the compressions in progress. */
  hold(job: HeldJob): Job {
    this.enqueue(job);
    return job;
  }

  private enqueue(job: Job): void {
    if (job.kind === 'compress' || job.kind === 'send') this.queued += byteLength(job.data);
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
      if (job.kind === 'send') this.queued -= byteLength(job.data);
      this.running = true;
      try {
        this.host.runHeld(job);
      } finally {
        this.running = false;
      }
    }
    this.checkBacklog();
  }

  private compressed(job: Job & { kind: 'compress' }, error: Error | null, payload: Buffer | undefined): void {
    this.jobs.shift();
    this.queued -= job.data.byteLength;
    let ok = false;
    if (error === null && !this.host.gone) {
      this.running = true;
      try {
        ok = this.host.sendCompressed(payload!, job.binary);
      } finally {
        this.running = false;
      }
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

  /** The connection closed: every queued job is dropped, its `done` told it was not sent. */
  close(): void {
    this.codec.close();
    const jobs = this.jobs;
    this.jobs = NO_JOBS;
    this.queued = 0;
    for (const job of jobs) if ('done' in job) job.done?.(false);
  }
}

function byteLength(data: Data): number {
  return typeof data === 'string' ? data.length : (data as Uint8Array).byteLength;
}
