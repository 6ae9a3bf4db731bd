/**
 * Writing a TCP socket without its Writable stream: the counterpart of reads.ts.
 *
 * `socket.write()` runs the Writable stream's machinery for every batch a connection flushes: `write` →
 * `writeOrBuffer` (length and state bookkeeping), cork/uncork and `writev` for a batch, `_writeGeneric`, a request
 * object, the handle call, then `onwrite`, a `process.nextTick` for `afterWrite` and the callback. What actually
 * sends the bytes is the last part: the handle's `writeBuffer(req, bytes)` / `writev(req, chunks, true)`, which
 * tries to write synchronously and, when the kernel does not take everything, queues the rest in libuv and calls
 * `req.oncomplete(status)` once it is written. This module makes that call itself, per flushed batch: one handle
 * write per connection per flush (a frame's header and payload go out together through `writev`, never
 * concatenated; a broadcast's prepared frame is written by every connection from the same bytes).
 *
 * What it relies on, none of it documented, so everything is checked:
 *
 * - the handle of a plain `net.Socket` (TCP or pipe, not TLS: a TLS socket's handle encrypts, and an HTTP/2 stream
 *   or any other Duplex has none) with `writeBuffer` and `writev` methods;
 * - how those methods take their request object, which differs between Node versions. It is learnt from the first
 *   write a socket makes through its public path, by a wrapper around that handle's write methods that removes
 *   itself when called:
 *   - up to Node 22, Node passes a request object (`WriteWrap`, a native class with no public constructor: taken
 *     from that first request's `constructor`), and the call returns 0 or a negative errno (EPIPE, ECONNRESET) for
 *     a write that failed at once; the request's `getAsyncId()` is -1 while no native request was made for it (the
 *     write completed synchronously), a request id otherwise (then `oncomplete` will be called);
 *   - from Node 24, Node passes null, and the call returns a number (0, or a negative errno) for a write that
 *     completed synchronously, or the request object the handle made for a write that goes on asynchronously
 *     (`oncomplete` is set on it, and its `writeStatus`, when not null, is a completion that happened already).
 *
 * A socket on which anything is off stays on the public path (`socket.write`), as does every batch written while
 * the socket's own Writable holds bytes (so a direct write never overtakes a public one). A handle call that answers
 * in an unexpected shape turns the direct path off for the whole process and says so once (a warning with code
 * `WSENGINE_WRITE_PATH_FALLBACK`). `WSENGINE_WRITE_PATH=stream` in the environment (read once, at load) forces the
 * public path.
 *
 * Backpressure is kept as the public path has it: bytes of a write that completes asynchronously are counted as
 * unsent ({@link DirectWriter.pending}) until libuv reports it written, exactly as `socket.writableLength` counts a
 * public write until its callback; `drain` follows once everything is written after a batch that went over the
 * high-water mark. Errors take the public path's route: the socket is destroyed with an errno error (`write EPIPE`),
 * so it emits `error` and `close`, and the connection reports 1006. Ending is unchanged: `socket.end()` shuts the
 * socket down through libuv, which does so after the writes it holds.
 *
 * @module
 */
import { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/** Called when a batch's bytes are written (with an error when the write failed). */
export type WriteDone = (error?: Error | null) => void;

/** What a {@link DirectWriter} tells its connection. */
export interface WriteHost {
  /** Everything written directly is out after a batch left the connection over its high-water mark. */
  onDirectDrain(): void;
}

/**
 * The code of the warning emitted (once per process, `process.emitWarning`) when a socket handle's write answers in
 * a shape the direct write path does not know and every socket falls back to `socket.write`.
 */
export const WRITE_PATH_FALLBACK_WARNING = 'WSENGINE_WRITE_PATH_FALLBACK';

/** Whether the direct path may be used at all (`WSENGINE_WRITE_PATH=stream` turns it off). */
const allowed = process.env.WSENGINE_WRITE_PATH !== 'stream';
/** Set once a handle call answered in an unexpected shape: every socket is back on the public path. */
let broken = false;

interface WriteRequest {
  oncomplete: (this: WriteRequest, status: number) => void;
  getAsyncId(): number;
  /** Node 24+: a completion that happened inside the write call (null otherwise). */
  writeStatus?: number | null;
  /** Set on a request that completes asynchronously only. */
  writer?: DirectWriter | null;
  bytes?: number;
  data?: Uint8Array | Uint8Array[] | null;
  done?: WriteDone | null;
}

interface StreamHandle {
  writeBuffer(req: WriteRequest | null, data: Uint8Array): unknown;
  writev(req: WriteRequest | null, chunks: Uint8Array[], allBuffers: boolean): unknown;
}

type WriteRequestClass = new () => WriteRequest;

/**
 * How handle writes take their request: the native request class (Node ≤ 22), {@link NO_REQUEST} (Node 24+: null is
 * passed, the handle makes a request when it needs one); undefined until a public write showed it, null when it
 * could not be used.
 */
let WriteWrap: WriteRequestClass | typeof NO_REQUEST | null | undefined;
/** {@link WriteWrap}'s value when handles take null and return their own request for an asynchronous write. */
const NO_REQUEST = 0;
/** A request whose last write completed synchronously (never bound to a native request): used for the next write. */
let spare: WriteRequest | null = null;

/**
 * What a {@link DirectWriter} needs of its socket: a `net.Socket`, or a socket of handle-socket.ts (which marks
 * itself with {@link kHandleWrites}).
 */
export interface WriterSocket {
  readonly writableLength: number;
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
  destroy(error?: Error): unknown;
}

/**
 * A socket that owns its handle and writes only through it (handle-socket.ts's) is marked with this key (true): it
 * holds no Writable stream whose bytes a direct write could overtake, so its writes always go directly.
 */
export const kHandleWrites = Symbol('wsengine.handleWrites');

/** A connection's direct write state. Made by {@link directWriter} for a socket that can be written directly. */
export class DirectWriter {
  /** Bytes handed to the handle in writes that have not completed (unsent as far as the connection knows). */
  pending = 0;
  /** A batch left the connection over its high-water mark: `onDirectDrain` is owed once everything is written. */
  waiting = false;
  /** Writes fell back to the public path for good (see {@link writeDirect}). */
  stream = false;

  /** @internal */
  constructor(
    readonly socket: WriterSocket,
    readonly host: WriteHost,
    /** The socket writes only through its handle ({@link kHandleWrites}): nothing of its can be overtaken. */
    readonly ordered = false,
  ) {}

  /** Bytes not yet written: the socket's Writable stream's and this writer's. */
  get unsent(): number {
    return this.socket.writableLength + this.pending;
  }

  /** Whether this socket's writes currently go through its handle. */
  get direct(): boolean {
    return !this.stream && !broken;
  }
}

/**
 * A direct writer for `socket`, or null when its writes must go through `socket.write` (not a plain `net.Socket`
 * with a stream handle, TLS, `WSENGINE_WRITE_PATH=stream`, or the path was turned off). Cheap: checks only.
 */
export function directWriter(socket: unknown, host: WriteHost): DirectWriter | null {
  if (!allowed || broken || WriteWrap === null) return null;
  if ((socket as { [kHandleWrites]?: boolean } | null)?.[kHandleWrites] === true) return new DirectWriter(socket as WriterSocket, host, true);
  if (!(socket instanceof Socket)) return null;
  if ((socket as { encrypted?: boolean }).encrypted === true) return null;
  const handle = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  if (handle == null || typeof handle.writeBuffer !== 'function' || typeof handle.writev !== 'function') return null;
  return new DirectWriter(socket, host);
}

/**
 * Writes the first `n` of `chunks` (`bytes` bytes in all) through the socket's handle in one call; `done` runs once
 * they are written (next tick for a synchronous write, as the public path calls back). Returns false, having done
 * nothing, when this batch must take the public path (the caller then writes it with `socket.write`): the socket's
 * Writable holds bytes, the handle changed, or the request class is not known yet.
 */
export function writeDirect(w: DirectWriter, chunks: ArrayLike<Uint8Array | undefined>, n: number, bytes: number, done: WriteDone | undefined): boolean {
  if (w.stream || broken) return false;
  const socket = w.socket;
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (handle === null || (!w.ordered && socket.writableLength !== 0) || socket.writableEnded) return false;
  if (WriteWrap === undefined) {
    learnRequestClass(handle);
    return false;
  }
  if (WriteWrap === null) {
    w.stream = true;
    return false;
  }
  let req: WriteRequest | null = null;
  if (WriteWrap !== NO_REQUEST) {
    req = spare;
    spare = null;
    if (req === null) {
      req = new WriteWrap();
      req.oncomplete = onWriteComplete;
    }
  }
  let data: Uint8Array | Uint8Array[];
  let result: unknown;
  if (n === 1) {
    data = chunks[0]!;
    result = handle.writeBuffer(req, data);
  } else {
    data = new Array<Uint8Array>(n);
    for (let i = 0; i < n; i++) data[i] = chunks[i]!;
    result = handle.writev(req, data, true);
  }
  if (result !== 0) {
    if (req === null && typeof result === 'object' && result !== null && typeof (result as WriteRequest).getAsyncId === 'function') {
      return pendingWrite(w, result as WriteRequest, bytes, data, done);
    }
    if (typeof result !== 'number') {
      // Not what this module knows: the bytes went (or not) through a call it does not understand. Everything
      // after this takes the public path; this batch is counted as written (the call did not throw).
      turnOff(`the socket handle's ${n === 1 ? 'writeBuffer' : 'writev'} returned ${typeof result}`);
      if (done !== undefined) process.nextTick(done, null);
      return true;
    }
    // Failed at once (EPIPE, ECONNRESET…): what the public path does, destroy the socket with the error.
    const error = errnoError(result);
    if (done !== undefined) process.nextTick(done, error);
    socket.destroy(error);
    return true;
  }
  if (req === null) {
    // Node 24+: a number is a write that completed synchronously.
    if (done !== undefined) process.nextTick(done, null);
    return true;
  }
  const id = req.getAsyncId();
  if (id === -1) {
    // Written synchronously: no native request was made, the object serves the next write.
    spare = req;
    if (done !== undefined) process.nextTick(done, null);
    return true;
  }
  if (typeof id !== 'number') {
    turnOff(`a write request's getAsyncId() returned ${typeof id}`);
    if (done !== undefined) process.nextTick(done, null);
    return true;
  }
  return pendingWrite(w, req, bytes, data, done);
}

/** A write queued in libuv: counted as unsent until it completes; the bytes are kept alive by the request. */
function pendingWrite(w: DirectWriter, req: WriteRequest, bytes: number, data: Uint8Array | Uint8Array[], done: WriteDone | undefined): boolean {
  req.writer = w;
  req.bytes = bytes;
  req.data = data;
  req.done = done ?? null;
  w.pending += bytes;
  if (req.oncomplete !== onWriteComplete) {
    // Node 24+: the handle's own request. A completion that came inside the call is recorded on it.
    req.oncomplete = onWriteComplete;
    const status = req.writeStatus;
    if (typeof status === 'number') {
      req.writeStatus = null;
      req.oncomplete(status);
    } else if (req.getAsyncId() === -1) {
      // Not a request in flight (a write that failed inside the call leaves its request released): no completion
      // will come. What the error was is not visible here; the socket is destroyed as for a failed write.
      req.oncomplete(EPIPE);
    }
  }
  return true;
}

/** The errno of a broken pipe (libuv's UV_EPIPE on every platform Node supports). */
const EPIPE = -32;

/** libuv finished an asynchronous write (`this` is its request). */
function onWriteComplete(this: WriteRequest, status: number): void {
  const w = this.writer!;
  const done = this.done;
  w.pending -= this.bytes!;
  this.writer = null;
  this.data = null;
  this.done = null;
  const socket = w.socket;
  if (typeof status === 'number' && status < 0 && !socket.destroyed) {
    // As the public path: the write's callback gets the error, and the socket is destroyed with it.
    const error = errnoError(status);
    if (done !== null && done !== undefined) done(error);
    socket.destroy(error);
    return;
  }
  if (done !== null && done !== undefined) done(null);
  if (w.pending === 0 && w.waiting && socket.writableLength === 0 && !socket.destroyed) {
    w.waiting = false;
    w.host.onDirectDrain();
  }
}

/**
 * An Error as Node makes one for a failed socket call: `write EPIPE` (or `read ECONNRESET`…), with `errno`, `code` and
 * `syscall`.
 */
export function errnoError(errno: number, syscall = 'write'): NodeJS.ErrnoException {
  let name: string;
  try {
    name = getSystemErrorName(errno);
  } catch {
    name = `Unknown system error ${errno}`;
  }
  const error: NodeJS.ErrnoException = new Error(`${syscall} ${name}`);
  error.errno = errno;
  error.code = name;
  error.syscall = syscall;
  return error;
}

const HANDLE_WRITES = ['writeBuffer', 'writev', 'writeLatin1String', 'writeUtf8String', 'writeAsciiString', 'writeUcs2String'] as const;

/**
 * Takes the request class from the next write the socket makes through its public path: its handle's write methods
 * are wrapped (own properties, over the prototype's) by one that notes the request's class, removes the wrappers and
 * makes the write.
 */
function learnRequestClass(handle: StreamHandle): void {
  const record = handle as unknown as Record<string, unknown>;
  if (Object.prototype.hasOwnProperty.call(record, 'writeBuffer')) return; // already armed on this handle
  const disarm = (): void => {
    for (const name of HANDLE_WRITES) if (Object.prototype.hasOwnProperty.call(record, name)) delete record[name];
  };
  for (const name of HANDLE_WRITES) {
    const original = record[name];
    if (typeof original !== 'function') continue;
    record[name] = function learningWrite(this: unknown, req: unknown, ...rest: unknown[]): unknown {
      disarm();
      if (WriteWrap === undefined) WriteWrap = req === null ? NO_REQUEST : requestClassOf(req);
      return (original as (...args: unknown[]) => unknown).call(this, req, ...rest);
    };
  }
}

/** The request's class if it is what this module knows (constructible, `getAsyncId()` -1 on a fresh one), else null. */
function requestClassOf(req: unknown): WriteRequestClass | null {
  try {
    const Class = (req as { constructor?: unknown } | null)?.constructor;
    if (typeof Class !== 'function' || Class === Object) throw new Error('the request is a plain object');
    const probe = new (Class as WriteRequestClass)();
    if (typeof probe.getAsyncId !== 'function' || probe.getAsyncId() !== -1) throw new Error('the request has no getAsyncId()');
    return Class as WriteRequestClass;
  } catch (error) {
    turnOff(`the socket's write request is not what it expects (${(error as Error).message})`);
    return null;
  }
}

function turnOff(why: string): void {
  if (broken) return;
  broken = true;
  spare = null;
  process.emitWarning(`wsengine: writing through socket handles is off, sockets write through socket.write(): ${why}. Please report it with your Node version.`, {
    code: WRITE_PATH_FALLBACK_WARNING,
  });
}

/**
 * Handle writes take requests of `Class` (a native `WriteWrap` that handle-socket.ts found), unless a public write
 * showed how already. Returns whether direct writes can be made (false when the class is not what this module knows,
 * or the path is off).
 */
export function useRequestClass(Class: unknown): boolean {
  if (!allowed || broken) return false;
  if (WriteWrap === undefined) WriteWrap = requestClassOf({ constructor: Class });
  return WriteWrap !== null && !broken;
}

/** Whether `directWriter` can be used in this process (false when `WSENGINE_WRITE_PATH=stream`). For tests. */
export function directWritesAllowed(): boolean {
  return allowed;
}
