/**
 * Connections accepted without a `net.Socket`: the server's own TCP listener hands each accepted TCP handle to a
 * {@link HandleSocket}, a small object that reads and writes that handle itself.
 *
 * A `net.Socket` is a Duplex stream: a Readable and a Writable state, an event emitter, a dozen closures and bound
 * functions, all made per connection and all run through per read and per write. A WebSocket connection uses none of
 * it once reads and writes go straight through the handle (reads.ts, writes.ts): on this machine a `net.Socket` was
 * ~1 kB of JS heap and ~3.5 kB of RSS per idle connection, and its construction a large part of a handshake's CPU. A
 * HandleSocket is the handle, a few fields and the engine's own read and write paths, and offers the part of the
 * socket interface the server and its connections use (`write`, `end`, `destroy`, `pause`/`resume`, the
 * `data`/`end`/`error`/`close`/`drain` events, the peer's address). Applications never see it: connections expose the
 * peer's address, and `IncomingUpgrade.socket` is a frozen summary.
 *
 * What it relies on is undocumented, so it is looked up and checked once, and any mismatch leaves the server on
 * Node's own `net.Socket`s (the documented path):
 *
 * - `process.binding('stream_wrap')` (allow-listed by Node for compatibility; deprecated without a runtime warning
 *   unless `--pending-deprecation`, with which this path is not used): `streamBaseState` (where a handle's read
 *   callback finds the bytes read, or the error), `WriteWrap` and `ShutdownWrap` (the request objects of a write and
 *   of a FIN), and `process.binding('tcp_wrap').TCP`, the class of the listener's handle;
 * - the listening server's `_handle.onconnection(status, clientHandle)`, which Node calls per accepted connection;
 *   it is replaced once listening (only on a plain TCP listener, not in a cluster worker, whose handle is not a TCP
 *   handle) by one that makes a HandleSocket instead of a `net.Socket`;
 * - the handle's methods: `useUserBuffer`, `readStart`/`readStop`, its `onread` callback, `writeBuffer`/`writev`
 *   with a `WriteWrap`, `shutdown` with a `ShutdownWrap`, `close`, `setNoDelay`, `getpeername`/`getsockname`.
 *
 * The Node majors the project supports (20, 22, 24, 26) behave the same here, and the tests that use the server run
 * on each (test/node-versions.test.ts). `WSENGINE_ACCEPT_PATH=socket` in the environment (read once, at load) keeps
 * `net.Socket`s, as do `WSENGINE_READ_PATH=stream` and `WSENGINE_WRITE_PATH=stream` (whose public paths are streams').
 * `server.stats().acceptPath` counts the connections of each kind.
 *
 * Semantics kept from `net.Socket` (as a server created with `allowHalfOpen: false` has them): the peer's FIN emits
 * `end` and ends our side; a read error destroys the socket with `read ECONNRESET` (`error`, then `close`); `end()`
 * sends our FIN once queued writes are out, and the socket closes once both sides are ended. While paused it goes on
 * reading its handle into a held list, up to 64 KiB (then it stops the handle until resumed), as a paused `net.Socket`
 * fills its stream's buffer: a peer that leaves while the application has paused its connection is noticed.
 *
 * @module
 */
import { Buffer } from 'node:buffer';
import type { Server as NetServer } from 'node:net';
import { bufferFor, handOn, kTakeReads, type ReadCallback, READ_BUFFER_SIZE, sharedReadBuffer } from './reads.js';
import { kConnection, kParser, kServer } from './slots.js';
import { DirectWriter, errnoError, kHandleWrites, type WriteDone, type WriteHost, writeDirect, useRequestClass } from './writes.js';

/** The code of the warning emitted once when a handle's read reports what this module cannot make sense of. */
export const ACCEPT_PATH_FALLBACK_WARNING = 'WSENGINE_ACCEPT_PATH_FALLBACK';

/** libuv's end-of-stream status (UV_EOF, the same on every platform Node supports). */
const UV_EOF = -4095;

/** What a `net.Socket` defaults to: a write that leaves more than this unsent returns false. */
const HIGH_WATER_MARK = 16 * 1024;

interface TcpHandle {
  onread: (this: TcpHandle) => Buffer | undefined;
  useUserBuffer(buffer: Buffer): void;
  readStart(): number;
  readStop(): number;
  shutdown(req: ShutdownRequest): number;
  close(callback: () => void): void;
  setNoDelay(enable: boolean): number;
  setKeepAlive(enable: boolean, delaySeconds: number): number;
  getpeername(out: Record<string, unknown>): number;
  getsockname(out: Record<string, unknown>): number;
  ref(): void;
  unref(): void;
  writeBuffer: unknown;
  writev: unknown;
  [kSocket]?: HandleSocket;
}

interface ShutdownRequest {
  oncomplete: (this: ShutdownRequest, status: number) => void;
  handle: TcpHandle;
}

interface Bindings {
  state: Int32Array;
  readResult: number;
  ShutdownWrap: new () => ShutdownRequest;
  TCP: abstract new (...args: never[]) => unknown;
}

const kSocket = Symbol('wsengine.handleSocket');

/** Whether the path may be used at all (read once, at load: see the module's doc). */
const allowed =
  process.env.WSENGINE_ACCEPT_PATH !== 'socket' && process.env.WSENGINE_READ_PATH !== 'stream' && process.env.WSENGINE_WRITE_PATH !== 'stream';
/** Set for good once a handle misbehaved: later connections are Node's `net.Socket`s. */
let fallenBack = false;
let bindings: Bindings | null | undefined;

/** Node's internals this module needs, or null when something is not as expected (see the module's doc). */
function loadBindings(): Bindings | null {
  if (bindings !== undefined) return bindings;
  bindings = null;
  if (!allowed) return null;
  // With --pending-deprecation, process.binding() warns (DEP0111): stay on the documented path instead.
  const flags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
  if (flags.includes('--pending-deprecation')) return null;
  try {
    const binding = (process as unknown as { binding?: (name: string) => Record<string, unknown> }).binding;
    if (typeof binding !== 'function') return null;
    const stream = binding.call(process, 'stream_wrap');
    const tcp = binding.call(process, 'tcp_wrap');
    const { streamBaseState, kReadBytesOrError, WriteWrap, ShutdownWrap } = stream;
    if (!(streamBaseState instanceof Int32Array) || typeof kReadBytesOrError !== 'number') return null;
    if (typeof ShutdownWrap !== 'function' || typeof tcp.TCP !== 'function') return null;
    if (!useRequestClass(WriteWrap)) return null;
    bindings = {
      state: streamBaseState,
      readResult: kReadBytesOrError,
      ShutdownWrap: ShutdownWrap as Bindings['ShutdownWrap'],
      TCP: tcp.TCP as Bindings['TCP'],
    };
  } catch {
    bindings = null; // process.binding() refused (the permission model) or threw: the documented path
  }
  return bindings;
}

/**
 * Makes `server` (a `node:net` server, listening) accept its connections as {@link HandleSocket}s handed to `accept`
 * instead of emitting `connection` with `net.Socket`s. Returns false, changing nothing, where this is not possible
 * (see the module's doc); Node's own path then stays in place. Connections the handle path declines later (after the
 * fallback warning) go through Node's path too.
 */
export function acceptHandles(server: NetServer, accept: (socket: HandleSocket) => void): boolean {
  const b = loadBindings();
  if (b === null || fallenBack) return false;
  const listener = (server as unknown as { _handle?: { onconnection?: unknown } | null })._handle;
  if (listener == null || !(listener instanceof b.TCP) || typeof listener.onconnection !== 'function') return false;
  const nodeOnConnection = listener.onconnection as (this: unknown, status: number, client?: unknown) => void;
  listener.onconnection = function onHandleConnection(this: unknown, status: number, client?: unknown): void {
    if (status !== 0 || fallenBack || !isTcpHandle(client, b)) {
      nodeOnConnection.call(this, status, client);
      return;
    }
    accept(new HandleSocket(client));
  };
  return true;
}

function isTcpHandle(client: unknown, b: Bindings): client is TcpHandle {
  if (!(client instanceof b.TCP)) return false;
  const h = client as unknown as Record<string, unknown>;
  return (
    typeof h.useUserBuffer === 'function' &&
    typeof h.readStart === 'function' &&
    typeof h.readStop === 'function' &&
    typeof h.shutdown === 'function' &&
    typeof h.writeBuffer === 'function' &&
    typeof h.writev === 'function' &&
    typeof h.close === 'function'
  );
}

/** Whether connections are being accepted as {@link HandleSocket}s in this process (for tests and stats). */
export function handleAcceptAllowed(): boolean {
  return loadBindings() !== null && !fallenBack;
}

type Listener = (...args: any[]) => void;
type Slot = Listener | Listener[] | undefined;

const PAUSED = 1;
/** Our FIN was sent (the shutdown request completed). */
const SHUT = 2;
const CLOSE_EMITTED = 4;
/** The handle was stopped: reads held while paused reached {@link HELD_HIGH_WATER_MARK}. */
const STOPPED = 8;
/** The peer's FIN came behind held reads: `end` follows their delivery. */
const END_HELD = 16;

/** Bytes a paused socket reads and holds before it stops its handle (as a paused `net.Socket`'s stream buffer). */
const HELD_HIGH_WATER_MARK = 64 * 1024;

/**
 * A server-side TCP connection over Node's handle, without a `net.Socket` (see the module's doc). Made by the
 * server; not constructed by applications.
 */
export class HandleSocket implements WriteHost {
  /** The TCP handle; null once closed. (Named as `net.Socket`'s, which the write path reads.) */
  _handle: TcpHandle | null;
  destroyed = false;
  /** The peer's FIN was read. */
  readableEnded = false;
  /** `end()` was called: nothing more is written. */
  writableEnded = false;
  /** Receives the reads (see reads.ts `readDirectly`); null: they are emitted as `data` events (copies). */
  reader: ReadCallback | null = null;
  /** What the handle reads into next: the shared buffer, or an own one while a large frame comes. */
  private buffer: Buffer;
  /** The state of writes made by `write` (the handshake's answer): made for a write, dropped once nothing is pending. */
  private writer: DirectWriter | null = null;
  private flags = 0;
  /** Reads that came while paused (or behind such reads), not yet handed on. */
  private held: Buffer[] | null = null;
  private heldBytes = 0;
  private peer: { address?: string; port?: number; family?: string } | undefined = undefined;
  private onData: Slot = undefined;
  private onEnd: Slot = undefined;
  private onError: Slot = undefined;
  private onClose: Slot = undefined;
  private onDrain: Slot = undefined;
  // The server's and the connection's back-references (slots.ts), reserved here so that they live in the object.
  [kServer]: unknown = undefined;
  [kParser]: unknown = undefined;
  [kConnection]: unknown = undefined;

  /** @internal */
  constructor(handle: TcpHandle) {
    this._handle = handle;
    handle[kSocket] = this;
    this.buffer = sharedReadBuffer();
    handle.onread = onHandleRead;
    handle.setNoDelay(true);
    handle.useUserBuffer(this.buffer);
    const error = handle.readStart();
    if (error !== 0) this.destroy(errnoError(error, 'read'));
  }

  // ── events: the five a connection uses, in fields (no listener table per socket) ──

  on(event: string, listener: Listener): this {
    const slot = this.slotOf(event);
    const now = this[slot];
    this[slot] = now === undefined ? listener : Array.isArray(now) ? [...now, listener] : [now, listener];
    return this;
  }

  addListener(event: string, listener: Listener): this {
    return this.on(event, listener);
  }

  once(event: string, listener: Listener): this {
    const once = (...args: unknown[]): void => {
      this.off(event, once);
      listener(...args);
    };
    return this.on(event, once);
  }

  off(event: string, listener: Listener): this {
    const slot = this.slotOf(event);
    const now = this[slot];
    if (now === listener) this[slot] = undefined;
    else if (Array.isArray(now)) {
      const i = now.lastIndexOf(listener);
      if (i !== -1) {
        const rest = now.filter((_, j) => j !== i);
        this[slot] = rest.length === 1 ? rest[0] : rest;
      }
    }
    return this;
  }

  removeListener(event: string, listener: Listener): this {
    return this.off(event, listener);
  }

  listenerCount(event: string): number {
    const now = this[this.slotOf(event)];
    return now === undefined ? 0 : Array.isArray(now) ? now.length : 1;
  }

  emit(event: string, ...args: unknown[]): boolean {
    const now = this[this.slotOf(event)];
    if (now === undefined) return false;
    if (typeof now === 'function') now.apply(this, args);
    else for (const listener of [...now]) listener.apply(this, args);
    return true;
  }

  private slotOf(event: string): 'onData' | 'onEnd' | 'onError' | 'onClose' | 'onDrain' {
    switch (event) {
      case 'data':
        return 'onData';
      case 'end':
        return 'onEnd';
      case 'error':
        return 'onError';
      case 'close':
        return 'onClose';
      case 'drain':
        return 'onDrain';
      default:
        throw new TypeError(`a server connection's socket emits data, end, error, close and drain only (not '${event}')`);
    }
  }

  // ── reading ──

  /** reads.ts `readDirectly`: `onRead` receives the reads from now on. */
  [kTakeReads](onRead: ReadCallback): void {
    this.reader = onRead;
  }

  /** @internal A read of `nread` bytes (the handle's `onread`). Returns the buffer of the next read when it changes. */
  read(nread: number): Buffer | undefined {
    const buffer = this.buffer;
    if (this.destroyed) return undefined;
    let coming = 0;
    if (this.held !== null || (this.flags & PAUSED) !== 0) this.hold(buffer, nread);
    else if (this.reader !== null) coming = handOn(this.reader, this, nread, buffer);
    else this.emit('data', Buffer.from(buffer.subarray(0, nread)));
    const next = bufferFor(coming);
    if (next === buffer || this.destroyed) return undefined;
    this.buffer = next;
    return next;
  }

  /**
   * A read while paused (or while reads held earlier wait): kept, in order, for `resume`. Up to
   * {@link HELD_HIGH_WATER_MARK} bytes: then the handle stops reading until they are delivered.
   */
  private hold(buffer: Buffer, nread: number): void {
    const chunk = buffer === sharedReadBuffer() ? Buffer.from(buffer.subarray(0, nread)) : buffer.subarray(0, nread);
    (this.held ??= []).push(chunk);
    this.heldBytes += nread;
    if (this.heldBytes >= HELD_HIGH_WATER_MARK && (this.flags & STOPPED) === 0) {
      this.flags |= STOPPED;
      this._handle?.readStop();
    }
  }

  /** @internal The handle reported the end of its reads: the peer's FIN, or an error. */
  readEnded(status: number): void {
    if (this.destroyed) return;
    if (status !== UV_EOF) {
      this.destroy(errnoError(status, 'read'));
      return;
    }
    this._handle?.readStop();
    // As a stream: `end` comes after the bytes read before it, even while paused when none wait.
    if (this.held !== null) this.flags |= END_HELD;
    else this.ended();
  }

  /** The peer's FIN, once every byte read before it is delivered. */
  private ended(): void {
    this.readableEnded = true;
    this.emit('end');
    if (this.destroyed) return;
    // As a net.Socket without allowHalfOpen: the peer's FIN ends our side too; closed once both are.
    if (!this.writableEnded) this.end();
    else if ((this.flags & SHUT) !== 0) this.destroy();
  }

  /**
   * Stops handing reads on: the handle goes on reading (so the peer's FIN or reset is still seen) into a held list, up
   * to {@link HELD_HIGH_WATER_MARK} bytes, as a paused `net.Socket` fills its stream's buffer.
   */
  pause(): this {
    this.flags |= PAUSED;
    return this;
  }

  /** Hands reads on again: first those held while paused (on the next tick, as a stream resumes), then new ones. */
  resume(): this {
    if ((this.flags & PAUSED) === 0) return this;
    this.flags &= ~PAUSED;
    if (this.held !== null) process.nextTick(deliverHeld, this);
    return this;
  }

  /** @internal Delivers the reads held while paused, in order, unless paused again meanwhile; then goes on reading. */
  deliverHeld(): void {
    const held = this.held;
    if (held === null || this.destroyed) return;
    while ((this.flags & PAUSED) === 0 && held.length > 0 && !this.destroyed) {
      const chunk = held.shift()!;
      this.heldBytes -= chunk.length;
      if (this.reader !== null) this.reader.call(this, chunk, false);
      else this.emit('data', chunk);
    }
    if (held.length > 0 || this.destroyed) return;
    this.held = null;
    if ((this.flags & END_HELD) !== 0) {
      this.flags &= ~END_HELD;
      this.ended();
    } else if ((this.flags & STOPPED) !== 0) {
      this.flags &= ~STOPPED;
      this._handle?.readStart();
    }
  }

  isPaused(): boolean {
    return (this.flags & PAUSED) !== 0;
  }

  // ── writing ──

  /** Bytes handed to the handle by `write` and not written yet. */
  get writableLength(): number {
    return this.writer?.pending ?? 0;
  }

  /** Never connecting: accepted connections are connected (`net.Socket`'s field). */
  get connecting(): boolean {
    return false;
  }

  /** `write` returns false once more than this many bytes are pending (as a `net.Socket`'s default). */
  get writableHighWaterMark(): number {
    return HIGH_WATER_MARK;
  }

  /** Nothing waits in a stream buffer: reads are handed on, or held while paused (see `pause`). */
  get readableLength(): number {
    return 0;
  }

  /** Writes `data` (bytes, or a string in `encoding`, UTF-8 by default); `callback` runs once it is written. */
  write(data: Uint8Array | string, encoding?: BufferEncoding | WriteDone, callback?: WriteDone): boolean {
    const done = typeof encoding === 'function' ? encoding : callback;
    const bytes = typeof data === 'string' ? Buffer.from(data, typeof encoding === 'string' ? encoding : 'utf8') : data;
    if (this.writableEnded || this.destroyed) {
      const error = Object.assign(new Error(this.destroyed ? 'Cannot call write after a stream was destroyed' : 'write after end'), {
        code: this.destroyed ? 'ERR_STREAM_DESTROYED' : 'ERR_STREAM_WRITE_AFTER_END',
      });
      if (done !== undefined) process.nextTick(done, error);
      return false;
    }
    const writer = this.writer ?? new DirectWriter(this, this, true);
    if (!writeDirect(writer, [bytes], 1, bytes.length, done)) {
      // Not reached while the module's checks hold (the request class is known before any HandleSocket exists).
      this.destroy(new Error('wsengine: the socket handle could not be written'));
      return false;
    }
    // Most writes complete at once: then no state is kept (an idle connection holds none).
    this.writer = writer.pending === 0 ? null : writer;
    const ok = writer.pending < HIGH_WATER_MARK;
    if (!ok) writer.waiting = true;
    return ok;
  }

  /** Writes are not held: each goes to the handle at once (the connection batches its own). */
  cork(): void {}
  uncork(): void {}

  /** writes.ts: everything written directly is out after a write that went over the high-water mark. */
  onDirectDrain(): void {
    if (this.writer?.pending === 0) this.writer = null;
    this.emit('drain');
  }

  /** Sends our FIN once queued writes are out (after writing `data`, if given); the socket closes once both sides ended. */
  end(data?: Uint8Array | string): this {
    if (data !== undefined) this.write(data);
    if (this.writableEnded || this.destroyed) return this;
    this.writableEnded = true;
    const handle = this._handle!;
    const req = new bindings!.ShutdownWrap();
    req.oncomplete = onShutdown;
    req.handle = handle;
    const error = handle.shutdown(req);
    if (error !== 0) this.destroy(errnoError(error, 'shutdown'));
    return this;
  }

  /** @internal Our FIN went out (or could not). */
  shutDown(status: number): void {
    this.flags |= SHUT;
    if (status < 0 && status !== UV_EOF) this.destroy();
    else if (this.readableEnded) this.destroy();
  }

  /** Closes the handle at once: `error` (with `error`), then `close`. Pending writes are dropped. */
  destroy(error?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    const handle = this._handle;
    if (error !== undefined) process.nextTick(emitError, this, error);
    if (handle === null) {
      process.nextTick(emitClose, this);
      return this;
    }
    handle.readStop();
    handle.close(onHandleClose.bind(null, this, error !== undefined));
    return this;
  }

  /** @internal The handle is closed. */
  closed(hadError: boolean): void {
    this._handle = null;
    this.emitCloseOnce(hadError);
  }

  /** @internal */
  emitCloseOnce(hadError: boolean): void {
    if ((this.flags & CLOSE_EMITTED) !== 0) return;
    this.flags |= CLOSE_EMITTED;
    this.emit('close', hadError);
  }

  // ── the rest of the socket interface the server uses ──

  setNoDelay(enable = true): this {
    this._handle?.setNoDelay(enable);
    return this;
  }

  setKeepAlive(enable = false, initialDelayMs = 0): this {
    this._handle?.setKeepAlive(enable, Math.floor(initialDelayMs / 1000));
    return this;
  }

  ref(): this {
    this._handle?.ref();
    return this;
  }

  unref(): this {
    this._handle?.unref();
    return this;
  }

  get remoteAddress(): string | undefined {
    return this.peerName().address;
  }

  get remotePort(): number | undefined {
    return this.peerName().port;
  }

  get remoteFamily(): string | undefined {
    return this.peerName().family;
  }

  get localAddress(): string | undefined {
    return this.address().address;
  }

  get localPort(): number | undefined {
    return this.address().port;
  }

  /** Our end's address, as `net.Socket.address()`. */
  address(): { address?: string; port?: number; family?: string } {
    const out: { address?: string; port?: number; family?: string } = {};
    this._handle?.getsockname(out);
    return out;
  }

  /** The peer's address, asked once (kept after the handle closed, as `net.Socket` keeps it). */
  private peerName(): { address?: string; port?: number; family?: string } {
    if (this.peer === undefined) {
      const out: { address?: string; port?: number; family?: string } = {};
      if (this._handle === null || this._handle.getpeername(out) !== 0) return out;
      this.peer = out;
    }
    return this.peer;
  }
}

(HandleSocket.prototype as unknown as Record<symbol, boolean>)[kHandleWrites] = true;

/** A handle's read callback (`this` is the handle): Node put the result in `streamBaseState`. */
function onHandleRead(this: TcpHandle): Buffer | undefined {
  const socket = this[kSocket]!;
  const nread = bindings!.state[bindings!.readResult]!;
  if (nread > 0) {
    if (nread > READ_BUFFER_SIZE || !Number.isInteger(nread)) return misread(socket, `a read of ${nread} bytes`);
    return socket.read(nread);
  }
  if (nread < 0) socket.readEnded(nread);
  return undefined;
}

/** A read result that cannot be right: this connection is dropped, later ones are `net.Socket`s. Says so once. */
function misread(socket: HandleSocket, what: string): undefined {
  socket.destroy(new Error(`wsengine: ${what} reported by the socket handle`));
  if (!fallenBack) {
    fallenBack = true;
    process.emitWarning(
      `wsengine: ${what} reported by a socket handle: Node's internals do not behave as wsengine's handle sockets expect (Node ${process.versions.node}); new connections use net.Socket (the documented path). Please report this with your Node version.`,
      { code: ACCEPT_PATH_FALLBACK_WARNING, type: 'Warning' },
    );
  }
  return undefined;
}

function deliverHeld(socket: HandleSocket): void {
  socket.deliverHeld();
}

function onShutdown(this: ShutdownRequest, status: number): void {
  this.handle[kSocket]?.shutDown(status);
}

function onHandleClose(socket: HandleSocket, hadError: boolean): void {
  socket.closed(hadError);
}

function emitError(socket: HandleSocket, error: Error): void {
  socket.emit('error', error);
}

function emitClose(socket: HandleSocket): void {
  socket.emitCloseOnce(false);
}
