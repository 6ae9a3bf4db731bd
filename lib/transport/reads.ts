/**
 * Reading a TCP socket without its Readable stream.
 *
 * Node's documented `onread` option of `net.Socket` (`{ buffer, callback }`) makes the socket read into one
 * buffer the application owns and call `callback(nread, buffer)` per read: no memory allocated by Node per read
 * (a 64 KiB block, shrunk to the read's size, wrapped in an ArrayBuffer and a Buffer), and none of the Readable
 * stream's work per read (`push`, the flowing-mode bookkeeping, the `data` event, the `maybeReadMore` tick). A
 * server cannot pass that option: the sockets it accepts are created by Node. This module switches a socket in
 * hand to the same mechanism, through what the option sets up:
 *
 * - the socket's three private slots that hold the option (symbols described `kBuffer`, `kBufferCb` and
 *   `kBufferGen`, own properties of every `net.Socket` since Node 12; found by their description, never by
 *   position), and
 * - the handle's `useUserBuffer(buffer)` (what the constructor calls for that option).
 *
 * Node itself then does the rest, as for a socket created with `onread`: its read callback calls ours,
 * end-of-stream and errors go through the stream as before (`end`, `error`, `close`). One difference: Node's
 * `pause()` of such a socket stops its handle, so that a paused socket reads nothing, not even the peer's FIN or
 * reset. Here pausing keeps the stream's own meaning instead (the socket's `pause` is the stream's): the handle
 * reads on, and a read that comes while the stream is paused, or still holds bytes to emit, goes into the stream's
 * buffer behind them, up to its high-water mark (Node then stops the handle until the stream wants more), as on the
 * public path. Bytes are thus never handed on ahead of bytes still waiting (those of a socket switched while paused
 * during a handshake, whose owner feeds the handshake's rest first), and a paused socket sees its end as a public
 * one does (`end`, once what it holds is read).
 *
 * Both are undocumented, so everything is checked before use (a `net.Socket` whose handle is a plain TCP or pipe
 * handle, not TLS; the three slots present and empty; `useUserBuffer` a function) and any mismatch leaves the
 * socket on the public path (`data` events), which is always wired as well. `WSENGINE_READ_PATH=stream` in the
 * environment (read once, at load) forces the public path; the test suite runs on both, and the direct path's tests
 * run under every supported Node major (test/node-versions.test.ts).
 *
 * And while in use, every read checks that Node still calls the buffer generator after each read (what the own
 * buffers of large frames rely on): Node calls it synchronously once the read callback returns, so when the next
 * read begins without it having run, Node's internals no longer behave as this module expects. From then on no
 * socket is switched, sockets already switched hand each read to their stream (copied, as the public path would
 * deliver it: `data` events), and the process is told once: a warning with code
 * {@link READ_PATH_FALLBACK_WARNING} (`process.on('warning')`).
 *
 * One buffer serves every socket of the process (reads are handled one at a time, synchronously), so a small read
 * is copied out (from Node's shared allocation pool) before it is handed on, and the protocol core owns it
 * (payloads are unmasked in place and delivered as views); a read above 4 KiB is lent instead, and the core
 * copies only what it keeps (`Protocol.receiveBorrowed`). While a large frame is
 * being received (at least {@link BULK_READ} payload bytes still to come, as the receiver says), the socket's next
 * read goes into a buffer of its own, at most what the frame still needs, which is handed over without a copy
 * (through the option's third slot, the buffer generator Node calls after each read): copying every 64 KiB read
 * out of the shared buffer into fresh memory cost a 64 KiB echo twice its CPU.
 *
 * @module
 */
import { Buffer } from 'node:buffer';
import { Socket } from 'node:net';
import { Duplex } from 'node:stream';

/** Bytes read at most per system call: what Node's own reads use (64 KiB). */
export const READ_BUFFER_SIZE = 64 * 1024;

/**
 * Called with each read's bytes; `this` is the socket. The receiver owns the buffer, unless `borrowed` is true: then
 * it is lent for the call only (keep a copy of what must outlive it). May return how many more bytes
 * it knows are coming (the rest of a frame being received): from {@link BULK_READ} on, the next read goes into a
 * buffer of its own, handed over whole, instead of the shared one and a copy.
 */
export type ReadCallback = (this: any, chunk: Buffer, borrowed: boolean) => number | void;

/**
 * Bytes known to be coming from which the next read gets a buffer of its own (at most {@link READ_BUFFER_SIZE}):
 * a large frame's payload is then read without the copy out of the shared buffer. Such a buffer exists only while
 * a frame that large is being received, and is never larger than what the frame still needs.
 */
export const BULK_READ = 8 * 1024;

/**
 * Reads above this many bytes (those a copy would not take from Node's pool) are lent to the receiver rather than
 * copied: it copies what it keeps. Copying each 64 KiB read into fresh memory made a 64 KiB echo several times
 * slower (the allocator returned and refaulted its pages every message).
 */
const LEND_READ = 4 * 1024;

/** Reads up to this many bytes are copied by a loop: cheaper than creating the view that `set` needs. */
const SMALL_READ = 64;

/**
 * A socket that reads its handle itself (handle-socket.ts's) has a method under this key: `socket[kTakeReads](onRead)`
 * makes `onRead` its receiver, as {@link readDirectly} does for a `net.Socket`.
 */
export const kTakeReads = Symbol('wsengine.takeReads');

interface Slots {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

/**
 * The code of the warning emitted (once per process, `process.emitWarning`) when Node's internals stop behaving as
 * the direct read path expects and every socket falls back to the public path.
 */
export const READ_PATH_FALLBACK_WARNING = 'WSENGINE_READ_PATH_FALLBACK';

/** Whether the direct path may be used at all (`WSENGINE_READ_PATH=stream` turns it off). */
const allowed = process.env.WSENGINE_READ_PATH !== 'stream';
/** Set for good once Node's internals misbehaved (see the module's doc): every read goes to the stream. */
let fallenBack = false;
/**
 * Whether Node called the buffer generator since the last direct read (it does so right after each read returns).
 * Cleared as a read returns, not before it is handed on: a read whose receiver throws never reaches the generator.
 */
let generated = true;
let slots: Slots | null | undefined;
let shared: Buffer | null = null;

function findSlots(socket: Socket): Slots | null {
  const found: Partial<Record<'kBuffer' | 'kBufferCb' | 'kBufferGen', symbol>> = {};
  for (const symbol of Object.getOwnPropertySymbols(socket)) {
    const name = symbol.description;
    if (name === 'kBuffer' || name === 'kBufferCb' || name === 'kBufferGen') {
      if (found[name] !== undefined) return null; // ambiguous: not the layout this module knows
      found[name] = symbol;
    }
  }
  const { kBuffer, kBufferCb, kBufferGen } = found;
  return kBuffer && kBufferCb && kBufferGen ? { buffer: kBuffer, callback: kBufferCb, generator: kBufferGen } : null;
}

interface Handle {
  useUserBuffer?: unknown;
  onread?: unknown;
}

/**
 * Switches `socket` to direct reads: from now on each read calls `onRead` with its bytes (a copy of a small read,
 * an own buffer handed over, or a large read lent for the call), while `data` events carry only what the stream had
 * already buffered. Returns false, and
 * changes nothing, when the socket or this Node does not offer the mechanism; the caller then reads `data` events.
 * Call it while nothing can be read in between (synchronously with wiring the socket).
 */
export function readDirectly(socket: unknown, onRead: ReadCallback): boolean {
  const take = (socket as { [kTakeReads]?: unknown } | null)?.[kTakeReads];
  if (typeof take === 'function') {
    (take as (onRead: ReadCallback) => void).call(socket, onRead);
    return true;
  }
  if (!allowed || fallenBack || !(socket instanceof Socket)) return false;
  // A TLS socket's handle decrypts: its reads are not the bytes on the wire, leave it on the stream path.
  if ((socket as { encrypted?: boolean }).encrypted === true) return false;
  const handle = (socket as unknown as { _handle?: Handle | null })._handle;
  if (handle == null || typeof handle.useUserBuffer !== 'function' || typeof handle.onread !== 'function') return false;
  if (slots === undefined) slots = findSlots(socket);
  if (slots === null) return false;
  const record = socket as unknown as Record<symbol, unknown>;
  // Already reading directly through this module (the server read the handshake that way): the new receiver
  // takes over from the next read.
  if (record[slots.generator] === nextBuffer) {
    record[slots.callback] = wrapperOf(onRead);
    return true;
  }
  if (record[slots.buffer] != null || record[slots.generator] != null) return false;
  if (socket.destroyed || socket.connecting) return false;
  const buffer = sharedReadBuffer();
  record[slots.callback] = wrapperOf(onRead);
  record[slots.generator] = nextBuffer;
  record[slots.buffer] = buffer;
  (handle.useUserBuffer as (b: Buffer) => void).call(handle, buffer);
  // With the slots set, Node's `pause()` would stop the handle: the stream's is used (see the module's doc).
  (socket as unknown as { pause: () => Socket }).pause = streamPause;
  return true;
}

/** `pause` of a socket that reads directly: the stream's, which leaves the handle reading (see the module's doc). */
const streamPause = Duplex.prototype.pause as () => Socket;

type NodeReadCallback = (this: Socket, nread: number, buffer: Buffer) => boolean | undefined;

const wrappers = new WeakMap<ReadCallback, NodeReadCallback>();

/**
 * Node's callback for a read: copies a small read, hands over a filled own buffer, lends a large read; passes it on.
 * While the stream is paused, or holds bytes still to emit, the read is kept in its buffer instead; false (Node then
 * stops the handle) once that buffer is full.
 */
function wrapperOf(onRead: ReadCallback): NodeReadCallback {
  let wrapper = wrappers.get(onRead);
  if (wrapper === undefined) {
    wrapper = function onSocketRead(this: Socket, nread: number, buffer: Buffer): boolean | undefined {
      if (!generated) fallBack('Node did not call the read buffer generator after a read');
      if (fallenBack || this.isPaused() || this.readableLength > 0) {
        expected = 0;
        const more = this.push(buffer === shared ? Buffer.from(buffer.subarray(0, nread)) : buffer.subarray(0, nread));
        generated = false;
        return more;
      }
      const coming = handOn(onRead, this, nread, buffer);
      // Node calls `nextBuffer` right after this returns (synchronously): it picks the buffer of the next read.
      expected = coming;
      generated = false;
      return undefined;
    };
    wrappers.set(onRead, wrapper);
  }
  return wrapper;
}

/**
 * Hands a read of `nread` bytes in `buffer` (the shared buffer, or one of {@link bufferFor}'s own) to `onRead`, with
 * `self` as `this`: a small read copied out, an own buffer mostly filled handed over, a large read lent. Returns what
 * the receiver said is still coming (0 when it said nothing), for {@link bufferFor}. Shared with handle-socket.ts,
 * whose sockets read through the same buffers.
 */
export function handOn(onRead: ReadCallback, self: unknown, nread: number, buffer: Buffer): number {
  let chunk: Buffer;
  let borrowed = false;
  if (buffer !== shared && nread * 4 >= buffer.length) {
    // An own buffer, mostly filled: handed over as it is.
    chunk = nread === buffer.length ? buffer : buffer.subarray(0, nread);
  } else if (nread > LEND_READ) {
    // A large read: lent, not copied. The receiver copies only what it keeps (a payload spread over reads is
    // copied into its message buffer anyway); an own buffer barely used is kept for the next read.
    if (buffer !== shared) spare = buffer;
    chunk = nread === buffer.length ? buffer : buffer.subarray(0, nread);
    borrowed = true;
  } else {
    // A small read: copied out (from Node's pool), so the receiver may keep views of it.
    if (buffer !== shared) spare = buffer;
    chunk = Buffer.allocUnsafe(nread);
    if (nread <= SMALL_READ) for (let i = 0; i < nread; i++) chunk[i] = buffer[i];
    else chunk.set(buffer.subarray(0, nread));
  }
  const coming = onRead.call(self, chunk, borrowed);
  return typeof coming === 'number' ? coming : 0;
}

/**
 * The buffer of a socket's next read, once its receiver said `coming` payload bytes are still to come: one of its
 * own (at most {@link READ_BUFFER_SIZE}, the spare one when there is one) from {@link BULK_READ} on, else the
 * shared one.
 */
export function bufferFor(coming: number): Buffer {
  const reuse = spare;
  spare = null;
  if (coming < BULK_READ || fallenBack) return sharedReadBuffer();
  return reuse ?? Buffer.allocUnsafeSlow(coming < READ_BUFFER_SIZE ? coming : READ_BUFFER_SIZE);
}

/** The one buffer every socket of the process reads into, unless it has one of its own for a large frame. */
export function sharedReadBuffer(): Buffer {
  shared ??= Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
  return shared;
}

/** What the last read's receiver said is coming; read by `nextBuffer`, which Node calls right after each read. */
let expected = 0;
/** The last read's own buffer when it was copied from rather than handed over: reused by the next read. */
let spare: Buffer | null = null;

/** The buffer of a socket's next read (Node's `kBufferGen` hook): its own while a large frame comes, else shared. */
function nextBuffer(): Buffer {
  const coming = expected;
  expected = 0;
  generated = true;
  return bufferFor(coming);
}

/**
 * Node's internals misbehaved: from now on every read goes through the streams (see the module's doc). Says so once.
 * The sockets already switched cannot be switched back (their handles read into the buffers this module gives), so
 * their reads keep arriving here and are pushed to their streams.
 */
function fallBack(reason: string): void {
  if (fallenBack) return;
  fallenBack = true;
  expected = 0;
  spare = null;
  process.emitWarning(
    `${reason}: Node's internals do not behave as wsengine's direct read path expects (Node ${process.versions.node}); every socket reads through its stream from now on (the public path, slower). Please report this with your Node version.`,
    { code: READ_PATH_FALLBACK_WARNING, type: 'Warning' },
  );
}

/**
 * Whether `readDirectly` can be used in this process: false when `WSENGINE_READ_PATH=stream`, and once the runtime
 * check fell back to the public path.
 */
export function directReadsAllowed(): boolean {
  return allowed && !fallenBack;
}

/**
 * Whether `socket`'s reads take the direct path: switched by {@link readDirectly} and not fallen back since. What
 * `WebSocketServer.stats()` counts.
 */
export function readsDirectly(socket: unknown): boolean {
  if ((socket as { [kTakeReads]?: unknown } | null)?.[kTakeReads] !== undefined) return true;
  if (fallenBack || !(socket instanceof Socket) || slots == null) return false;
  return (socket as unknown as Record<symbol, unknown>)[slots.generator] === nextBuffer;
}
