/**
 * The sending half of a {@link WebSocketConnection}: messages, fragments, prepared frames, pings and the close go
 * through the protocol core (pull mode: it puts frames in its output), then join the batch written at the end of the
 * read or tick (see outbound.ts), or wait in the outbound queue to keep their order. `WebSocketConnection` extends
 * it with the receiving half, the socket's events and async iteration.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { type Data as Payload, toBytes } from '../core/bytes.js';
import { encodeFrame, encodeTextFrame } from '../core/frame.js';
import { type Protocol, ReadyState, validateClose } from '../core/protocol.js';
import type { DeflateCodec } from '../deflate/codec.js';
import { controlArgs, type SendCallback, sendArgs, type SendOptions, type Settings } from './options.js';
import { batchDone, type CompressJob, failAll, failLater, flushAtEndOfTick, flushOut, type Job, OutQueue, type WholeJob } from './outbound.js';
import type { PreparedMessage } from './prepared.js';
import { readsDirectly } from './reads.js';
import { type DirectWriter, kHandleWrites, writeDirect } from './writes.js';

// Bits of `ConnectionBase.flags` (one small integer rather than a field per boolean).
/** @internal The `close` event has fired. */
export const CLOSED = 1;
/** @internal The socket's buffer is over its high-water mark (a send returns false until `drain`). */
export const WRITE_BLOCKED = 2;
/** @internal The output leaves soon without being asked: at the end of the read being handled, or of the tick. */
export const FLUSH_SCHEDULED = 4;
/** @internal Reading paused by the application (`pause()`). */
export const USER_PAUSED = 8;
/** @internal `close()` was called while the queue held work: the close frame waits in it. */
export const CLOSE_REQUESTED = 16;
/** @internal Our side of TCP is ended (`socket.end()` called): nothing more is written. */
export const ENDING = 32;
/** @internal An application's fragmented message is open (its final fragment not yet accepted). */
export const STREAMING = 64;
/** @internal The socket closed while a message was being inflated: `close` waits until what was read is delivered. */
export const FINISH_DEFERRED = 128;
/** @internal The core's close frame waits in the queue behind messages accepted before it (see `sendBeforeClose`). */
export const CLOSE_QUEUED = 256;
/** @internal A message from the peer is being inflated: input is held until it is delivered. */
export const INFLATING = 512;

/** The listener table of a connection (see its constructor): an empty null-prototype object as prototype. */
const ListenerTable = function ListenerTable(this: object) {} as unknown as new () => object;
ListenerTable.prototype = Object.create(null);

/**
 * What every {@link WebSocketConnection} can send, and its state: the base of the class (see there). Not used alone.
 */
export abstract class ConnectionBase extends EventEmitter {
  /** @internal */
  protected readonly socket: Duplex;
  /** @internal */
  protected readonly core: Protocol;
  /** @internal The option values (timeouts, limits): one object shared by every connection made with the same values. */
  protected readonly settings: Settings;
  /** @internal permessage-deflate's codec (null without compression). */
  protected readonly codec: DeflateCodec | null;
  /** @internal Booleans, as bits (CLOSED, WRITE_BLOCKED, … above). */
  protected flags = 0;
  /** @internal Created when the closing handshake starts. */
  protected closeTimer: NodeJS.Timeout | null = null;
  /** @internal Callbacks of the messages in the core's output: they run once that batch is flushed. */
  protected cbs: SendCallback[] = NO_CBS;
  /** @internal Work waiting to be sent in order (created the first time something has to wait). */
  protected queue: OutQueue | null = null;
  /** @internal Writes through the socket's handle (see writes.ts); null: through `socket.write`. */
  protected writer: DirectWriter | null = null;

  /** @internal */
  constructor(socket: Duplex, core: Protocol, settings: Settings, codec: DeflateCodec | null) {
    super();
    // EventEmitter's own listener table is a null-prototype literal, which V8 keeps in dictionary mode (~160 B per
    // connection); this one has a prototype without properties, so lookups of any name are as safe and it stays a
    // fast object (~40 B). EventEmitter only reads, writes and deletes its keys.
    (this as unknown as { _events: object })._events = new ListenerTable();
    this.socket = socket;
    this.core = core;
    this.settings = settings;
    this.codec = codec;
  }

  /** @internal Reads according to what holds input back (see WebSocketConnection). */
  abstract updateFlow(): void;
  /** @internal The compression backlog crossed its limit (input is held) or fell below it (input resumes). */
  abstract backlog(over: boolean): void;

  /**
   * 1 `OPEN`, 2 `CLOSING` (a close frame sent or received, or TCP ending), 3 `CLOSED` (the `close` event has
   * fired); never 0 `CONNECTING`, as a connection exists only once its handshake is done. The values are the
   * {@link ReadyState} numbers, also on the class and every instance: `conn.readyState === conn.OPEN`.
   */
  get readyState(): number {
    if ((this.flags & CLOSED) !== 0) return ReadyState.CLOSED;
    if (this.core.readyState === ReadyState.CLOSED || (this.flags & (CLOSE_REQUESTED | ENDING)) !== 0) return ReadyState.CLOSING;
    return this.core.readyState;
  }

  /**
   * Bytes accepted by `send` (and the other sends) and not yet handed to the kernel, counted as frame bytes: frame
   * headers and a client's masking keys included, a compressed message at its compressed size (one queued for
   * compression at its uncompressed size), pings, pongs and the close frame too. It measures what the connection
   * holds in memory, which is what a send budget needs (the hub's slow-consumer limit reads it); it is not the
   * WHATWG figure: the browser-style {@link WebSocket.bufferedAmount} counts application payload bytes only. An
   * 8 MiB message sent by a client adds 8,388,622 here (14 bytes of header and mask), 8,388,608 there.
   */
  get bufferedAmount(): number {
    return this.unsent + this.core.outputBytes + (this.queue?.queuedBytes ?? 0);
  }

  /** @internal Bytes handed to the socket and not yet written: its Writable's, and those of direct writes in progress. */
  get unsent(): number {
    return this.writer === null ? this.socket.writableLength : this.writer.unsent;
  }

  /** @internal Which read and write path this connection's socket uses (`server.stats()`). */
  get paths(): { accept: 'handle' | 'socket'; read: 'direct' | 'stream'; write: 'direct' | 'stream' } {
    return {
      accept: (this.socket as { [kHandleWrites]?: boolean })[kHandleWrites] === true ? 'handle' : 'socket',
      read: readsDirectly(this.socket) ? 'direct' : 'stream',
      write: this.writer?.direct === true ? 'direct' : 'stream',
    };
  }

  /**
   * @internal Ends our side of TCP once written data is out: asked by the core (closing handshake done, or failed),
   * or the peer ended its side (FIN; the `close` event then reports 1006 unless its close frame came first).
   */
  onEnd(): void {
    if ((this.flags & ENDING) !== 0) return;
    if (this.queue?.blocking) return this.queue.insert(END_JOB);
    this.flush();
    this.flags |= ENDING;
    this.socket.end();
    if (this.closeTimer === null) this.armCloseTimer();
    this.updateFlow();
  }

  // ───────────────────────────── output ─────────────────────────────

  /**
   * The core put output in its slots from `from` on (a send, a control frame, the close frame): it waits in the
   * queue when work is queued ahead of it, else it joins the batch that leaves at the end of the read or the tick —
   * or now, past the socket's high-water mark. `cb` is the callback of the message it carries.
   */
  /** @internal */
  protected wrote(from: number, cb: SendCallback | undefined): void {
    const core = this.core;
    const queue = this.queue;
    if (queue !== null && queue.blocking) {
      const data = core.output.slice(from, core.outputCount) as Array<Buffer | Uint8Array>;
      core.clearOutput(from);
      // After a close frame the core writes nothing: the first write it makes with `closeSent` holds that frame.
      const close = core.closeSent && (this.flags & CLOSE_QUEUED) === 0;
      if (close) this.flags |= CLOSE_QUEUED;
      return queue.insert({ kind: 'write', data, cb, close });
    }
    const socket = this.socket;
    if ((this.flags & ENDING) !== 0 || socket.destroyed) {
      core.clearOutput(from);
      if (cb !== undefined) failLater(cb, new Error('WebSocket closed before the data was written'));
      return;
    }
    if (cb !== undefined) {
      if (this.cbs === NO_CBS) this.cbs = [];
      this.cbs.push(cb);
    }
    if (core.outputBytes + this.unsent >= socket.writableHighWaterMark) return this.flush();
    if ((this.flags & FLUSH_SCHEDULED) === 0) {
      // Output made outside a read (a burst of sends, a broadcast) leaves at the end of the tick.
      this.flags |= FLUSH_SCHEDULED;
      flushAtEndOfTick(this);
    }
  }

  /** @internal The end of the tick in which output was gathered outside a read. */
  flushTick(): void {
    this.flags &= ~FLUSH_SCHEDULED;
    this.flush();
  }

  /** @internal Hands the core's output to the socket now: one write, or one corked batch, whose callbacks run together. */
  flush(): void {
    const core = this.core;
    const n = core.outputCount;
    if (n === 0) return;
    const socket = this.socket;
    const cbs = this.cbs;
    if (cbs.length > 0) this.cbs = NO_CBS;
    if (socket.destroyed) {
      core.clearOutput();
      failAll(cbs, new Error('WebSocket closed before the data was written'));
      return;
    }
    const done = cbs.length === 0 ? undefined : batchDone(cbs);
    const writer = this.writer;
    let ok: boolean;
    if (writer !== null && writeDirect(writer, core.output, n, core.outputBytes, done)) {
      // Through the socket's handle (writes.ts): `drain` is owed once a batch left us over the high-water mark.
      ok = writer.unsent < socket.writableHighWaterMark;
      if (!ok) writer.waiting = true;
    } else {
      ok = flushOut(socket, core.output, n, done);
    }
    this.flags = ok ? this.flags & ~WRITE_BLOCKED : this.flags | WRITE_BLOCKED;
    core.clearOutput();
  }

  /** Whether no more may be sent: closing, closed, or a close frame went out. */
  /** @internal */
  protected get sendsRefused(): boolean {
    return (this.flags & (CLOSE_REQUESTED | ENDING | CLOSED)) !== 0 || this.core.closeSent;
  }


  /**
   * Sends a message: a string as text; a Buffer, ArrayBuffer or any view as binary (or as text with
   * `{ binary: false }` when the bytes are UTF-8). Returns false when the socket's buffer is over its high-water
   * mark (wait for `drain`, or use {@link sendAsync}), or when the connection is closing/closed (the data is
   * dropped, as browsers do). Anything else as `data` throws a TypeError.
   *
   * `callback` (as in ws: `send(data, callback)` or `send(data, options, callback)`) runs once the message was
   * handed to the socket, or with an Error when it could not be (not open, closed first). Options that are not
   * an object, an unknown option name (ws's `fin`, `mask`), or a callback that is not a function, throw a TypeError. A message sent while a fragmented one is
   * being streamed ({@link sendFragment}) follows the stream's final fragment.
   */
  send(data: Payload, callback?: SendCallback): boolean;
  send(data: Payload, options?: SendOptions, callback?: SendCallback): boolean;
  send(data: Payload, options?: SendOptions | SendCallback, callback?: SendCallback): boolean {
    if (options !== undefined || callback !== undefined) {
      callback = sendArgs(options, callback, 'send');
      if (typeof options === 'function') options = undefined;
    }
    if (this.sendsRefused) {
      if (typeof data !== 'string') toBytes(data);
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    return this.sendMessage(data, options as SendOptions | undefined, callback, undefined);
  }

  /**
   * Sends a whole message now, or queues it (for compression, behind queued work, or behind an open fragmented
   * message). `done` (for `sendAsync`) is told whether it was written: at once when it went now.
   */
  private sendMessage(data: Payload, options: SendOptions | undefined, callback: SendCallback | undefined, done: ((ok: boolean) => void) | undefined): boolean {
    const binary = options?.binary ?? typeof data !== 'string';
    const codec = this.codec;
    if (codec !== null && codec.compresses && options?.compress !== false) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : toBytes(data);
      if (bytes.length >= this.settings.threshold) return this.enqueue({ kind: 'compress', data: bytes, binary, started: false, cb: callback, done });
      data = bytes;
    }
    if ((this.flags & STREAMING) !== 0 || (this.queue?.blocking ?? false)) {
      return this.enqueue({ kind: 'send', data: typeof data === 'string' ? data : toBytes(data), binary, cb: callback, done });
    }
    const core = this.core;
    const mark = core.outputCount;
    core.send(data, binary);
    this.wrote(mark, callback);
    done?.(true);
    return (this.flags & WRITE_BLOCKED) === 0;
  }

  /** Queues a whole message: behind queued work, or held behind an open fragmented message. */
  private enqueue(job: WholeJob): boolean {
    const queue = (this.queue ??= new OutQueue(this, this.codec));
    if ((this.flags & STREAMING) !== 0) queue.hold(job);
    else queue.push(job);
    return (this.flags & WRITE_BLOCKED) === 0 && queue.queuedBytes < this.socket.writableHighWaterMark;
  }

  /** @internal */
  protected notOpen(): Error {
    return new Error(`WebSocket is not open (readyState ${this.readyState}): the data was not sent`);
  }

  /**
   * Sends a message and resolves once the socket can take more (at once when its buffer is below the high-water
   * mark, else on `drain`). Rejects when the connection is not open or closes first.
   */
  sendAsync(data: Payload, options?: SendOptions): Promise<void> {
    if (options !== undefined) sendArgs(options, undefined, 'sendAsync');
    if (this.sendsRefused) {
      if (typeof data !== 'string') toBytes(data);
      return Promise.reject(new Error(`WebSocket is not open (readyState ${this.readyState})`));
    }
    let settled: boolean | undefined;
    let resolve: () => void = noop;
    let reject: (error: Error) => void = noop;
    const done = (sent: boolean): void => {
      if (!sent) return reject(new Error('WebSocket closed before the message was sent'));
      if ((this.flags & WRITE_BLOCKED) === 0) return resolve();
      this.drained().then(resolve, reject);
    };
    this.sendMessage(data, options, undefined, (sent) => {
      if (settled === undefined) settled = sent; // written at once: settled below
      else done(sent);
    });
    if (settled !== undefined) return settled ? ((this.flags & WRITE_BLOCKED) === 0 ? Promise.resolve() : this.drained()) : Promise.reject(new Error('WebSocket closed before the message was sent'));
    settled = false;
    return new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        this.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        this.off('drain', onDrain);
        reject(new Error('WebSocket closed before its buffer drained'));
      };
      this.once('drain', onDrain);
      this.once('close', onClose);
    });
  }

  /**
   * Sends one fragment of a message being streamed (RFC 6455 §5.4): the first call fixes the type, `fin` ends
   * it. Pings and pongs may go between fragments; whole messages sent meanwhile (`send`, `sendPrepared`) are held
   * and follow the final fragment, in order. Fragments are never compressed. Returns and calls back as
   * {@link send}.
   */
  sendFragment(data: Payload, fin: boolean, callback?: SendCallback): boolean;
  sendFragment(data: Payload, fin: boolean, options?: SendOptions, callback?: SendCallback): boolean;
  sendFragment(data: Payload, fin: boolean, options?: SendOptions | SendCallback, callback?: SendCallback): boolean {
    if (typeof fin !== 'boolean') throw new TypeError(`sendFragment(data, fin): fin must be a boolean, got ${typeof fin}`);
    callback = sendArgs(options, callback, 'sendFragment');
    const binary = (typeof options === 'object' ? options.binary : undefined) ?? typeof data !== 'string';
    if (this.sendsRefused) {
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    const queue = this.queue;
    if (queue !== null && queue.blocking) {
      queue.insert({ kind: 'fragment', data: typeof data === 'string' ? data : toBytes(data), binary, fin, cb: callback });
    } else {
      this.sendFragmentNow(data, fin, binary, callback);
    }
    this.flags = fin ? this.flags & ~STREAMING : this.flags | STREAMING;
    if (fin) queue?.release();
    return (this.flags & WRITE_BLOCKED) === 0;
  }

  private sendFragmentNow(data: Payload, fin: boolean, binary: boolean, cb: SendCallback | undefined): void {
    const mark = this.core.outputCount;
    if (this.core.sendFragment(data, fin, binary)) this.wrote(mark, cb);
    else if (cb !== undefined) failLater(cb, this.notOpen());
  }

  /**
   * Sends a message framed once by `prepare()`: the same bytes go to every connection (broadcast). A compressed
   * prepared message goes compressed to connections whose negotiation allows it (server_no_context_takeover and a
   * large enough window), uncompressed to the others. Client connections mask every frame, so they frame the
   * payload themselves. It goes through the protocol core like any message: in order behind messages waiting for
   * compression, and after the final fragment of a message being streamed. Returns and calls back as
   * {@link send}.
   */
  sendPrepared(message: PreparedMessage, callback?: SendCallback): boolean {
    if (callback !== undefined && typeof callback !== 'function') throw new TypeError(`sendPrepared callback must be a function, got ${typeof callback}`);
    if (this.sendsRefused) {
      if (callback !== undefined) failLater(callback, this.notOpen());
      return false;
    }
    const core = this.core;
    if (core.role === 'client') return this.send(message.payload, { binary: message.isBinary, compress: false }, callback);
    const c = this.codec;
    const frame =
      message.compressed && c !== null && c.compresses && c.params.serverNoContextTakeover && c.params.serverMaxWindowBits >= message.compressed.windowBits
        ? message.compressed.frame
        : message.frame;
    if (frame === undefined) throw new TypeError('sendPrepared takes a message made by prepare()');
    if ((this.flags & STREAMING) !== 0 || (this.queue?.blocking ?? false)) return this.enqueue({ kind: 'prepared', frame, cb: callback });
    const mark = core.outputCount;
    core.sendFrame(frame);
    this.wrote(mark, callback);
    return (this.flags & WRITE_BLOCKED) === 0;
  }

  /**
   * Sends a ping (at most 125 bytes of payload; RangeError above). Returns false when not open. ws-style
   * arguments: `ping()`, `ping(data)`, `ping(callback)`, `ping(data, callback)`, `ping(data, mask, callback)`;
   * `mask` may only say what the role implies (true on a client, false on a server), else RangeError. `callback`
   * runs as for {@link send}.
   */
  ping(callback: SendCallback): boolean;
  ping(data?: Payload, callback?: SendCallback): boolean;
  ping(data?: Payload, mask?: boolean, callback?: SendCallback): boolean;
  ping(data?: Payload | SendCallback, mask?: boolean | SendCallback, callback?: SendCallback): boolean {
    return this.control(true, data, mask, callback);
  }

  /** Sends a pong (at most 125 bytes). Returns false when not open. Arguments as {@link ping}. */
  pong(callback: SendCallback): boolean;
  pong(data?: Payload, callback?: SendCallback): boolean;
  pong(data?: Payload, mask?: boolean, callback?: SendCallback): boolean;
  pong(data?: Payload | SendCallback, mask?: boolean | SendCallback, callback?: SendCallback): boolean {
    return this.control(false, data, mask, callback);
  }

  private control(isPing: boolean, data: Payload | SendCallback | undefined, mask: boolean | SendCallback | undefined, callback: SendCallback | undefined): boolean {
    const [payload, cb] = controlArgs(isPing ? 'ping' : 'pong', this.core.role, data, mask, callback);
    if ((this.flags & CLOSED) !== 0) {
      if (cb !== undefined) failLater(cb, this.notOpen());
      return false;
    }
    const mark = this.core.outputCount;
    const ok = isPing ? this.core.ping(payload) : this.core.pong(payload);
    if (ok) this.wrote(mark, cb);
    else if (cb !== undefined) failLater(cb, this.notOpen());
    return ok && (this.flags & WRITE_BLOCKED) === 0;
  }

  /**
   * Starts the closing handshake: sends a close frame (`code` 1000, 3000–4999 or 1001–1003/1007–1014; `reason` at
   * most 123 UTF-8 bytes) and destroys the socket if the peer has not finished the handshake within
   * `closeTimeout`. RangeError/TypeError for an invalid code or reason. Does nothing when already closing.
   */
  close(code?: number, reason?: string): void {
    const queue = this.queue;
    if (queue !== null && queue.blocking && (this.flags & CLOSE_REQUESTED) === 0 && !this.core.closeSent) {
      // Validate now, send once the messages queued before it are out.
      validateClose(code, reason);
      this.flags |= CLOSE_REQUESTED;
      queue.insert({ kind: 'close', code, reason });
    } else {
      const mark = this.core.outputCount;
      this.core.close(code, reason);
      if (this.core.outputCount !== mark) this.wrote(mark, undefined);
    }
    if ((this.flags & CLOSED) === 0 && this.closeTimer === null) this.armCloseTimer();
  }

  /** Destroys the socket at once, without a closing handshake. The `close` event reports 1006. */
  terminate(): void {
    this.socket.destroy();
  }

  /** @internal */
  protected armCloseTimer(): void {
    this.closeTimer = setTimeout(destroySocket, this.settings.closeTimeout, this.socket);
    this.closeTimer.unref?.();
  }

  // ─────────────────── the outbound queue's host (see outbound.ts) ───────────────────

  /** @internal A compressed message written now (RSV1 set) with its callback; `payload` null: not sent. */
  sendCompressed(payload: Buffer | null, job: CompressJob): boolean {
    const mark = this.core.outputCount;
    const sent = payload !== null && (this.core.send(payload, job.binary, true) || this.sendBeforeClose(payload, job.binary, true));
    if (sent) this.wrote(mark, job.cb);
    else if (job.cb !== undefined) failLater(job.cb, this.notOpen());
    return sent;
  }

  /**
   * A message accepted by `send` before a close frame, written once the compressions ahead of it are done: when the
   * peer's close frame arrived meanwhile, the core answered it at once (it now refuses data), but that answer waits
   * in the queue behind this message, so the message still goes first, as it was accepted. `data` is a payload to
   * frame, or a prepared frame. False when no close frame waits (the message was refused for another reason).
   */
  private sendBeforeClose(data: Payload | Buffer | [Buffer, Uint8Array], binary?: boolean, rsv1?: boolean): boolean {
    if ((this.flags & CLOSE_QUEUED) === 0 || (this.flags & ENDING) !== 0 || this.socket.destroyed) return false;
    if (binary === undefined) this.core.pushOutput(data as Buffer | [Buffer, Uint8Array]);
    else {
      const opcode = binary ? 0x2 : 0x1;
      const mask = this.core.mask;
      this.core.pushOutput(typeof data === 'string' ? encodeTextFrame(data, true, rsv1, mask, opcode) : encodeFrame(opcode, toBytes(data as Payload), true, rsv1, mask));
    }
    return true;
  }

  /** @internal Work that waited in the queue, in order (its writes go straight to the batch). */
  runJob(job: Exclude<Job, CompressJob>): void {
    const core = this.core;
    if (job.kind === 'send' || job.kind === 'prepared') {
      const mark = core.outputCount;
      const sent =
        job.kind === 'send'
          ? core.send(job.data, job.binary) || this.sendBeforeClose(job.data, job.binary, false)
          : core.sendFrame(job.frame) || this.sendBeforeClose(job.frame);
      if (sent) this.wrote(mark, job.cb);
      else if (job.cb !== undefined) failLater(job.cb, this.notOpen());
      job.done?.(sent);
    } else if (job.kind === 'fragment') {
      this.sendFragmentNow(job.data, job.fin, job.binary, job.cb);
    } else if (job.kind === 'write') {
      if (job.close) this.flags &= ~CLOSE_QUEUED;
      const mark = core.outputCount;
      for (let i = 0; i < job.data.length; i++) core.pushOutput(job.data[i]);
      this.wrote(mark, job.cb);
    } else if (job.kind === 'close') {
      const mark = core.outputCount;
      core.close(job.code, job.reason);
      if (core.outputCount !== mark) this.wrote(mark, undefined);
    } else {
      this.onEnd();
    }
  }

  /** @internal Whether the connection is gone (closed, or its socket destroyed with nothing left to deliver). */
  get gone(): boolean {
    return (this.flags & CLOSED) !== 0 || (this.socket.destroyed && (this.flags & FINISH_DEFERRED) === 0);
  }

}

/** Shared empty values: a connection allocates its own only once it needs one. */
export const NO_CBS: SendCallback[] = [];
const END_JOB: Job = { kind: 'end' };

function noop(): void {}

function destroySocket(socket: Duplex): void {
  socket.destroy();
}
