/**
 * The sans-I/O WebSocket protocol: a streaming frame parser, message assembly, control frames and the closing
 * handshake, for either role. Synchronous; no sockets, timers or promises. Two ways to drive it:
 *
 * - **Pull** (no handler, as python-websockets' `protocol.py`): feed bytes with {@link Protocol.receiveData}, then
 *   drain what they produced — events with {@link Protocol.nextEvent} (or {@link Protocol.eventsReceived}), bytes to
 *   send with {@link Protocol.dataToSend} (or the `output` slots). The core never calls out, so a transport is never
 *   re-entered from inside a read. This is what wsengine's own connections use.
 * - **Push** (a {@link ProtocolHandler}): {@link Protocol.receive} calls the handler for every event and write, as
 *   they happen.
 *
 * Decisions worth knowing:
 * - **Chunking never matters.** Any split of the input gives the same events. A frame header split across reads
 *   is gathered in a 14-byte scratch buffer; nothing else is buffered per read.
 * - **Zero copy where possible.** A message whose single frame lies inside one read is delivered as a view of
 *   that read, unmasked in place (`receive` owns the buffers it is given). Fragments and payloads spread over reads
 *   are kept as views when they are at least 1 KiB and a quarter of the read that holds them, and otherwise copied
 *   into 16 KiB blocks, so a peer dribbling one byte per read costs memory in proportion to its bytes, not its reads.
 *   A view keeps its whole read alive, so what views hold beyond their bytes counts toward `maxMessageSize` too:
 *   past it, pieces are copied (and views already held are compacted into one copy) — a peer padding its fragments
 *   with pongs cannot make a message hold more than the limit.
 * - **Limits are counted in bytes, checked on the header, before any payload is held.** A message may not cost more
 *   than `maxMessageSize`, where each fragment after the first costs `fragmentOverhead` bytes on top of its
 *   payload. A 4 MiB message in 65,536 fragments of 64 bytes is accepted (Autobahn 9.3.1), while an endless run
 *   of empty fragments reaches the limit and closes with 1009.
 * - **Fail fast on invalid UTF-8**: text is validated piece by piece as it arrives (close 1007).
 * - **Non-minimal length encodings** (a 16-bit length below 126, a 64-bit one below 65,536) are accepted by default,
 *   as most engines and browsers accept them; `strictLengths: true` rejects them with 1002 (RFC 6455 §5.2 says
 *   the minimal encoding MUST be used, and says nothing of what a receiver does otherwise). A 64-bit length with
 *   the most significant bit set is always a 1002; one of 2^53 or more can only exceed the limits (1009).
 * - **Extensions** plug in through `rsv1`: when negotiated, RSV1 is accepted on the first frame of a data message,
 *   and such a message is delivered as-is with `compressed = true`; its UTF-8 and size after decoding are the
 *   extension's to check (see the deflate layer). The parser itself never changes for an extension.
 * - **Violations never throw.** The close frame with the code mapped in `errors.ts` is written, input is ignored from
 *   then on, `error` is reported and `end` asks the transport to close the TCP connection (RFC 6455 §7.1.7).
 *
 * This file is the receiving half: the frame parser and the receive state machine. The rest lives beside it:
 * `protocol-output.ts` (the base class: events, the output slots, sending and the close frame), `assembly.ts`
 * (a message arriving in pieces), `protocol-settings.ts` (options and their shared frozen settings),
 * `protocol-events.ts` (event types and the push-mode adapter) and `close.ts` (checks on a close's arguments).
 *
 * @module
 */
import { Buffer } from 'node:buffer';
import { Assembly, MIN_VIEW } from './assembly.js';
import { validateClose } from './close.js';
import { CloseCode, isValidCloseCode, protocolError, ProtocolError, type ProtocolErrorCode } from './errors.js';
import { MAX_CONTROL_PAYLOAD, Opcode } from './frame.js';
import { xorMask, xorMaskCopy } from './mask.js';
import { ProtocolEventType, type ProtocolHandler } from './protocol-events.js';
import { EMPTY, ProtocolOutput } from './protocol-output.js';
import { type ProtocolOptions, ReadyState } from './protocol-settings.js';
import { isValidUtf8, Utf8Validator } from './utf8.js';

export { type ProtocolEvent, ProtocolEventType, type ProtocolHandler } from './protocol-events.js';
export { PROTOCOL_DEFAULTS, type ProtocolOptions, ReadyState } from './protocol-settings.js';
export { validateClose };

const HEADER = 0;
const PAYLOAD = 1;
const DONE = 2;

// Bits of `Protocol.flags` (one small integer instead of a field per boolean).
const FIN = 1;
const RSV1 = 2;
const MASKED = 4;
const VALIDATE_TEXT = 8;
const MESSAGE_COMPRESSED = 16;
const CLOSE_RECEIVED = 32;
// 64: CLOSE_SENT, the output's bit (protocol-output.ts).
/** Push mode: input held by `pause()` until `resume()`. */
const PAUSED = 128;
/** Pull mode: parsing stopped after a compressed message, until the next `receiveData`. */
const STOPPED = 256;
/** The chunk being parsed is lent (see `receiveBorrowed`). */
const BORROWED = 512;
/** Parsing is under way (a `receive` from inside a handler is refused). */
const PARSING = 1024;

/** A shared empty list: a connection allocates its own only once it holds something (never pushed to). */
const NONE: Buffer[] = [];

/**
 * One WebSocket connection's protocol state, for either role. Create it once the opening handshake is done
 * (it starts OPEN).
 */
export class Protocol extends ProtocolOutput {
  // Parser state.
  private state = HEADER;
  /** Allocated on the first header split across reads. */
  private scratch: Buffer | null = null;
  private scratchLength = 0;
  private opcode = 0;
  private k0 = 0;
  private k1 = 0;
  private k2 = 0;
  private k3 = 0;
  private payloadLength = 0;
  private payloadRead = 0;
  private control: Buffer | null = null;
  /** The own buffer of a data frame being received by {@link directPiece}. */
  private target: Buffer | null = null;

  // Message assembly.
  private messageOpcode = 0;
  private messageCost = 0;
  /** Pieces of the message held so far: null until a piece has to be held. */
  private asm: Assembly | null = null;
  /** Allocated on the first text message that arrives in pieces. */
  private utf8Validator: Utf8Validator | null = null;

  /** Push mode: input held while paused. */
  private pending: Buffer[] = NONE;

  /**
   * `handler` given: push mode (every event and write calls it as it happens). Omitted or null: pull mode (events
   * and bytes to send are queued until drained).
   */
  constructor(options: ProtocolOptions, handler: ProtocolHandler | null = null) {
    super(options, handler);
  }

  /** Whether a close frame was received. */
  get closeReceived(): boolean {
    return (this.flags & CLOSE_RECEIVED) !== 0;
  }

  // ───────────────────────────── receiving ─────────────────────────────

  /**
   * Pull mode: feeds bytes from the peer, then returns how many were processed: all of them, unless a compressed
   * message (RSV1) was found — parsing stops right after it, so that the caller can inflate it before what follows
   * (other messages, the close frame) is handled; it feeds the rest again once ready. What the bytes produced is
   * drained with {@link nextEvent} and {@link dataToSend}. Input after a close frame or a violation is ignored
   * (counted as processed).
   *
   * The buffer is owned by the protocol from then on (payloads are unmasked in place and delivered as views of it),
   * unless `borrowed`: the bytes are only lent for the call (a transport's shared read buffer) — they may be
   * unmasked in place, but whatever is kept or delivered is copied first; a rest not processed is the caller's to
   * copy before its buffer is reused.
   */
  receiveData(chunk: Buffer, borrowed = false): number {
    // Nothing outside the protocol runs while it parses in pull mode (it calls no handler), so parsing cannot be
    // re-entered or interrupted by an exception: no guard and no try/finally on this path.
    if (this.handler !== null) throw new TypeError('receiveData is for pull mode (a Protocol made without a handler): use receive()');
    this.flags = (this.flags & ~STOPPED) | (borrowed ? BORROWED : 0);
    const length = chunk.length;
    let offset = 0;
    while (offset < length) {
      if (this.state === DONE) {
        offset = length;
        break;
      }
      if ((this.flags & STOPPED) !== 0) break;
      offset = this.state === HEADER ? this.readHeader(chunk, offset) : this.readPayload(chunk, offset);
    }
    this.flags &= ~BORROWED;
    return offset;
  }


  /**
   * Push mode: like {@link receive}, for bytes that are only lent for the duration of the call (see
   * {@link receiveData}'s `borrowed`).
   */
  receiveBorrowed(chunk: Buffer): void {
    this.receive(chunk, true);
  }

  /**
   * Push mode: feeds bytes from the peer; the handler is called for what they produce. The buffer is owned by the
   * protocol from then on: payloads are unmasked in place and delivered as views of it. Input after a close frame
   * or a violation is ignored. Not to be called from inside a handler method (Error).
   */
  receive(chunk: Buffer, borrowed = false): void {
    if ((this.flags & PARSING) !== 0) throw new Error('Protocol.receive called from inside a handler: feed the bytes once it returned');
    if ((this.flags & PAUSED) !== 0 || this.pending.length > 0) {
      if (this.pending === NONE) this.pending = [];
      this.pending.push(borrowed ? Buffer.from(chunk) : chunk);
      return;
    }
    this.flags |= PARSING | (borrowed ? BORROWED : 0);
    try {
      const n = this.parse(chunk, 0);
      // Paused by the handler mid-chunk: the rest waits for `resume` (nothing else can be pending: `receive` is not
      // re-entered, and nothing was pending when parsing started).
      if (n < chunk.length) this.pending = [borrowed ? Buffer.from(chunk.subarray(n)) : chunk.subarray(n)];
    } finally {
      this.flags &= ~(PARSING | BORROWED);
    }
  }

  /** Parses from `offset` until the chunk ends, parsing stops (pause, compressed message) or is done. */
  private parse(chunk: Buffer, offset: number): number {
    const length = chunk.length;
    while (offset < length) {
      if (this.state === DONE) return length;
      if ((this.flags & (PAUSED | STOPPED)) !== 0) return offset;
      if (this.state === HEADER) {
        offset = this.readHeader(chunk, offset);
      } else {
        offset = this.readPayload(chunk, offset);
      }
    }
    return offset;
  }

  /**
   * Push mode: stops processing input after the current frame; later input is kept, in order, until
   * {@link resume}. An asynchronous stage (decompression) calls it from `onMessage` so that what follows a message
   * — other messages, the close frame — is handled only once that message is delivered. (Pull mode stops after a
   * compressed message by itself: see {@link receiveData}.)
   */
  pause(): void {
    this.flags |= PAUSED;
  }

  /** Push mode: processes the input kept since {@link pause}, then continues normally. */
  resume(): void {
    if ((this.flags & PAUSED) === 0 || (this.flags & PARSING) !== 0) {
      this.flags &= ~PAUSED;
      return;
    }
    this.flags = (this.flags & ~PAUSED) | PARSING;
    try {
      const pending = this.pending;
      while ((this.flags & PAUSED) === 0 && pending.length > 0) {
        const chunk = pending[0];
        const n = this.parse(chunk, 0);
        if (n < chunk.length) pending[0] = chunk.subarray(n);
        else pending.shift();
      }
    } finally {
      this.flags &= ~PARSING;
    }
  }

  /**
   * Payload bytes of the frame being received that have not arrived yet (0 between frames, after the end, or while
   * paused). A transport may read them into a buffer of their own rather than a shared one.
   */
  get payloadPending(): number {
    return this.state === PAYLOAD && (this.flags & (PAUSED | STOPPED)) === 0 ? this.payloadLength - this.payloadRead : 0;
  }

  /** Push mode: whether input is held by {@link pause}. */
  get isPaused(): boolean {
    return (this.flags & PAUSED) !== 0;
  }

  /**
   * Fails the connection for a violation found outside the parser (an extension's decoding error, or its size
   * limit): writes the close frame with `error.closeCode`, ignores further input, reports the error, then the end.
   */
  failWith(error: ProtocolError): void {
    if (this.state === DONE && this.closeReceived) return;
    this.flags &= ~(PAUSED | STOPPED);
    this.pending = NONE;
    this.failed(error);
  }


  private readHeader(chunk: Buffer, offset: number): number {
    const available = chunk.length - offset;
    if (this.scratchLength === 0 && available >= 2) {
      const need = headerLength(chunk[offset + 1]);
      if (available >= need) {
        this.parseHeader(chunk, offset);
        return offset + need;
      }
    }
    // Header split across reads: gather it in the scratch buffer.
    const scratch = (this.scratch ??= Buffer.allocUnsafe(14));
    let need = this.scratchLength < 2 ? 2 : headerLength(scratch[1]);
    while (offset < chunk.length && this.scratchLength < need) {
      scratch[this.scratchLength++] = chunk[offset++];
      if (this.scratchLength === 2) need = headerLength(scratch[1]);
    }
    if (this.scratchLength === need) {
      this.scratchLength = 0;
      this.parseHeader(scratch, 0);
    }
    return offset;
  }

  private parseHeader(b: Buffer, at: number): void {
    const b0 = b[at];
    const b1 = b[at + 1];
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const opcode = (this.opcode = b0 & 0x0f);
    const masked = (b1 & 0x80) !== 0;
    this.flags = (this.flags & ~(FIN | RSV1 | MASKED)) | (fin ? FIN : 0) | (rsv1 ? RSV1 : 0) | (masked ? MASKED : 0);
    const settings = this.settings;
    let length = b1 & 0x7f;
    let p = at + 2;
    if (length === 126) {
      length = (b[p] << 8) | b[p + 1];
      p += 2;
      if (length < 126 && settings.strictLengths) return this.fail('LENGTH_NOT_MINIMAL', 'non-minimal 16-bit payload length');
    } else if (length === 127) {
      const hi = b.readUInt32BE(p);
      const lo = b.readUInt32BE(p + 4);
      p += 8;
      // RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
      if (hi > 0x7fffffff) return this.fail('LENGTH_64BIT_MSB', '64-bit payload length with the most significant bit set');
      // Lengths of 2^53 and more are not exact as numbers; they exceed every limit anyway.
      length = hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x100000000 + lo;
      if (length < 65536 && settings.strictLengths) return this.fail('LENGTH_NOT_MINIMAL', 'non-minimal 64-bit payload length');
    }
    if (masked) {
      this.k0 = b[p];
      this.k1 = b[p + 1];
      this.k2 = b[p + 2];
      this.k3 = b[p + 3];
    }
    this.payloadLength = length;
    this.payloadRead = 0;

    // RFC 6455 §5.1: clients MUST mask every frame, servers MUST NOT.
    if (masked !== (settings.role === 'server')) {
      return settings.role === 'server'
        ? this.fail('MASK_EXPECTED', 'client frame is not masked')
        : this.fail('MASK_UNEXPECTED', 'server frame is masked');
    }
    // RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them.
    if ((b0 & 0x30) !== 0 || (rsv1 && !settings.rsv1)) {
      return this.fail('RSV_NOT_NEGOTIATED', 'reserved bits set without a negotiated extension');
    }

    if (opcode >= 0x8) {
      if (opcode > Opcode.PONG) return this.fail('RESERVED_OPCODE', `reserved control opcode 0x${opcode.toString(16)}`);
      // RFC 6455 §5.5: control frames MUST NOT be fragmented and MUST have a payload of 125 bytes or less.
      if (!fin) return this.fail('CONTROL_FRAGMENTED', 'fragmented control frame');
      if (length > MAX_CONTROL_PAYLOAD) return this.fail('CONTROL_TOO_LONG', 'control frame payload over 125 bytes');
      // RFC 7692 §6.1: an extension's RSV1 never applies to control frames.
      if (rsv1) return this.fail('RSV1_ON_CONTROL', 'RSV1 set on a control frame');
    } else if (opcode === Opcode.CONTINUATION) {
      if (this.messageOpcode === 0) return this.fail('UNEXPECTED_CONTINUATION', 'continuation frame without a message to continue');
      // RFC 7692 §6.1: RSV1 is set on the first frame of a message only.
      if (rsv1) return this.fail('RSV1_ON_CONTINUATION', 'RSV1 set on a continuation frame');
      const cost = this.messageCost + length + settings.fragmentOverhead;
      if (length > settings.maxFrameSize) return this.fail('FRAME_TOO_BIG', `frame of ${length} bytes over the ${settings.maxFrameSize}-byte limit`);
      if (cost > settings.maxMessageSize) return this.fail('MESSAGE_TOO_BIG', `message over the ${settings.maxMessageSize}-byte limit`);
      this.messageCost = cost;
      // What is held counts too: views keep whole reads alive. Copy them out rather than hold more than the limit.
      const asm = this.asm;
      if (asm !== null && cost + asm.viewBytes - asm.viewedLength > settings.maxMessageSize) asm.compact();
    } else if (opcode === Opcode.TEXT || opcode === Opcode.BINARY) {
      if (this.messageOpcode !== 0) return this.fail('EXPECTED_CONTINUATION', 'new data frame inside a fragmented message');
      if (length > settings.maxFrameSize) return this.fail('FRAME_TOO_BIG', `frame of ${length} bytes over the ${settings.maxFrameSize}-byte limit`);
      if (length > settings.maxMessageSize) return this.fail('MESSAGE_TOO_BIG', `message over the ${settings.maxMessageSize}-byte limit`);
      this.messageOpcode = opcode;
      this.messageCost = length;
      this.flags = (this.flags & ~(MESSAGE_COMPRESSED | VALIDATE_TEXT)) | (rsv1 ? MESSAGE_COMPRESSED : opcode === Opcode.TEXT ? VALIDATE_TEXT : 0);
    } else {
      return this.fail('RESERVED_OPCODE', `reserved data opcode 0x${opcode.toString(16)}`);
    }

    if (length === 0) this.frameComplete(EMPTY);
    else this.state = PAYLOAD;
  }

  private readPayload(chunk: Buffer, offset: number): number {
    const remaining = this.payloadLength - this.payloadRead;
    const available = chunk.length - offset;
    if (this.payloadRead === 0 && available >= remaining) {
      // The whole payload lies in this read: a view, unmasked in place.
      const end = offset + remaining;
      if ((this.flags & MASKED) !== 0) xorMask(chunk, offset, end, this.k0, this.k1, this.k2, this.k3);
      this.state = HEADER;
      this.frameComplete(chunk.subarray(offset, end));
      return end;
    }
    const n = available < remaining ? available : remaining;
    const end = offset + n;
    if (this.opcode < 0x8 && (this.target !== null || (this.payloadRead === 0 && n >= MIN_VIEW && n * 4 >= this.payloadLength))) {
      return this.directPiece(chunk, offset, end);
    }
    if ((this.flags & MASKED) !== 0) this.unmaskPiece(chunk, offset, end, null);
    this.payloadRead += n;
    const last = this.payloadRead === this.payloadLength;
    if (last) this.state = HEADER;
    if (this.opcode >= 0x8) {
      this.controlPiece(chunk, offset, end, last);
    } else {
      this.dataPiece(chunk.subarray(offset, end), last);
    }
    return end;
  }

  /**
   * A piece of a data frame that spans reads and already has a quarter of its payload (at least 1 KiB) in its first
   * read: the frame gets one buffer of its exact size, and each piece is unmasked straight into it — one pass over
   * the bytes instead of unmasking in place and copying again when the message is assembled. (The quarter bounds
   * what a peer that announces a large frame and then dribbles can make us allocate: 4× the bytes it sent.)
   */
  private directPiece(chunk: Buffer, offset: number, end: number): number {
    // Its own ArrayBuffer (not the shared pool), so holding it keeps a view and assembly does not copy it.
    const target = (this.target ??= Buffer.allocUnsafeSlow(this.payloadLength));
    const at = this.payloadRead;
    if ((this.flags & MASKED) !== 0) this.unmaskPiece(chunk, offset, end, target);
    else chunk.copy(target, at, offset, end);
    this.payloadRead += end - offset;
    if ((this.flags & VALIDATE_TEXT) !== 0 && !this.utf8.push(target, at, this.payloadRead)) {
      this.fail('INVALID_UTF8', 'invalid UTF-8 in a text message');
      return end;
    }
    if (this.payloadRead < this.payloadLength) return end;
    this.state = HEADER;
    this.target = null;
    this.hold(target);
    this.frameEnd();
    return end;
  }

  /**
   * Unmasks `chunk[start, end)`, the next piece of the payload, with the key rotated to the payload offset: in place,
   * or into `target` at that offset.
   */
  private unmaskPiece(chunk: Buffer, start: number, end: number, target: Buffer | null): void {
    const r = this.payloadRead & 3;
    const a = r === 0 ? this.k0 : r === 1 ? this.k1 : r === 2 ? this.k2 : this.k3;
    const b = r === 0 ? this.k1 : r === 1 ? this.k2 : r === 2 ? this.k3 : this.k0;
    const c = r === 0 ? this.k2 : r === 1 ? this.k3 : r === 2 ? this.k0 : this.k1;
    const d = r === 0 ? this.k3 : r === 1 ? this.k0 : r === 2 ? this.k1 : this.k2;
    if (target === null) xorMask(chunk, start, end, a, b, c, d);
    else xorMaskCopy(chunk.subarray(start, end), target, this.payloadRead, a, b, c, d);
  }

  /** A complete frame whose payload arrived in one piece, or is empty. */
  private frameComplete(payload: Buffer): void {
    // A lent read is copied only where its payload is handed on whole; a piece of a message goes through `hold`,
    // which copies it then.
    const flags = this.flags;
    if (this.opcode >= 0x8) return this.controlFrame((flags & BORROWED) !== 0 ? Buffer.from(payload) : payload);
    if ((flags & FIN) !== 0 && this.asm === null) {
      // Nothing held (a single-frame message, or earlier fragments were empty): deliver the view itself.
      if ((flags & VALIDATE_TEXT) !== 0 && !isValidUtf8(payload)) return this.fail('INVALID_UTF8', 'invalid UTF-8 in a text message');
      return this.deliver((flags & BORROWED) !== 0 ? Buffer.from(payload) : payload);
    }
    this.dataPiece(payload, true);
  }

  /** A piece of a data frame's payload; `last` when it ends the frame. */
  private dataPiece(piece: Buffer, last: boolean): void {
    if ((this.flags & VALIDATE_TEXT) !== 0 && !this.utf8.push(piece)) return this.fail('INVALID_UTF8', 'invalid UTF-8 in a text message');
    this.hold(piece);
    if (last) this.frameEnd();
  }

  /** A data frame's last piece is held: on the message's final frame, check UTF-8 is complete and deliver. */
  private frameEnd(): void {
    if ((this.flags & FIN) === 0) return;
    if ((this.flags & VALIDATE_TEXT) !== 0 && !this.utf8.end()) return this.fail('INVALID_UTF8', 'invalid UTF-8 in a text message');
    this.deliver(this.takeHeld());
  }

  private deliver(data: Buffer): void {
    const binary = this.messageOpcode === Opcode.BINARY;
    this.messageOpcode = 0;
    this.messageCost = 0;
    if ((this.flags & MESSAGE_COMPRESSED) === 0) return this.event(binary ? ProtocolEventType.BINARY : ProtocolEventType.TEXT, data);
    this.flags &= ~MESSAGE_COMPRESSED;
    // Pull mode: stop after a compressed message, so that the transport inflates it before what follows is handled.
    if (this.handler === null) this.flags |= STOPPED;
    this.event(binary ? ProtocolEventType.BINARY_COMPRESSED : ProtocolEventType.TEXT_COMPRESSED, data);
  }

  /** Keeps a piece of the message being assembled (see {@link Assembly.hold}); the assembly starts with one. */
  private hold(piece: Buffer): void {
    if (piece.length === 0) return;
    (this.asm ??= new Assembly()).hold(piece, (this.flags & BORROWED) !== 0, this.messageCost, this.settings.maxMessageSize);
  }

  /** The assembled message (empty when nothing was held); the assembly state goes. */
  private takeHeld(): Buffer {
    const a = this.asm;
    if (a === null) return EMPTY;
    this.asm = null;
    return a.take();
  }

  private controlPiece(chunk: Buffer, start: number, end: number, last: boolean): void {
    if (this.control === null) this.control = Buffer.allocUnsafe(MAX_CONTROL_PAYLOAD);
    chunk.copy(this.control, this.payloadRead - (end - start), start, end);
    if (last) this.controlFrame(Buffer.from(this.control.subarray(0, this.payloadLength)));
  }

  private controlFrame(payload: Buffer): void {
    const opcode = this.opcode;
    if (opcode === Opcode.PING) {
      this.event(ProtocolEventType.PING, payload);
    } else if (opcode === Opcode.PONG) {
      this.event(ProtocolEventType.PONG, payload);
    } else {
      this.closeFrame(payload);
    }
  }

  private closeFrame(payload: Buffer): void {
    let code: number = CloseCode.NO_STATUS;
    let reason = '';
    if (payload.length === 1) return this.fail('INVALID_CLOSE_PAYLOAD', 'close frame with a 1-byte payload');
    if (payload.length >= 2) {
      code = (payload[0] << 8) | payload[1];
      if (!isValidCloseCode(code)) return this.fail('INVALID_CLOSE_CODE', `invalid close code ${code}`);
      if (!isValidUtf8(payload, 2)) return this.fail('INVALID_CLOSE_REASON', 'invalid UTF-8 in the close reason');
      reason = payload.toString('utf8', 2);
    }
    this.flags |= CLOSE_RECEIVED;
    this.closeCode = code;
    this.closeReason = reason;
    this.state = DONE;
    this.releaseMessage();
    // readyState becomes CLOSED when the event is taken (see `answer`).
    this.event(ProtocolEventType.CLOSE, EMPTY);
    if (this.settings.role === 'server') this.event(ProtocolEventType.END, EMPTY);
  }

  private fail(code: ProtocolErrorCode, message: string): void {
    this.failed(protocolError(code, message));
  }

  private failed(error: ProtocolError): void {
    this.state = DONE;
    this.releaseMessage();
    // readyState becomes CLOSING when the event is taken (see `answer`).
    this.event(ProtocolEventType.ERROR, error);
    this.event(ProtocolEventType.END, EMPTY);
  }

  private get utf8(): Utf8Validator {
    return (this.utf8Validator ??= new Utf8Validator());
  }

  private releaseMessage(): void {
    this.target = null;
    this.asm = null;
    this.messageOpcode = 0;
    this.utf8Validator?.reset();
  }


  /**
   * The transport was closed (EOF or error). Moves to CLOSED; returns the code to report: the peer's close code
   * when its close frame came, else 1006.
   */
  transportClosed(): number {
    this.readyState = ReadyState.CLOSED;
    this.state = DONE;
    this.flags &= ~(PAUSED | STOPPED);
    this.pending = NONE;
    this.releaseMessage();
    return this.closeReceived ? this.closeCode : CloseCode.ABNORMAL;
  }

  /**
   * Bytes currently held for a message being assembled (for memory accounting and tests): what is held, not only
   * what was accepted — a part kept as a view of a read counts that whole read.
   */
  get bufferedMessageBytes(): number {
    const a = this.asm;
    const held = a === null ? 0 : a.heldBytes;
    return held + (this.target === null ? 0 : this.target.length);
  }

  /** @internal Whether state for a message arriving in pieces is held (tests: it exists only while one does). */
  get assembling(): boolean {
    return this.asm !== null;
  }
}

/** Header length announced by the second header byte. */
function headerLength(b1: number): number {
  const len = b1 & 0x7f;
  return (len === 126 ? 4 : len === 127 ? 10 : 2) + (b1 & 0x80 ? 4 : 0);
}

export { ProtocolError };
