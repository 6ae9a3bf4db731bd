/**
 * The sans-I/O WebSocket protocol: a streaming frame parser, message assembly, control frames and the closing
 * handshake, for either role. Synchronous; no sockets, timers or promises. Bytes go in through
 * {@link Protocol.receive}; messages, control events and the bytes to send come out through a
 * {@link ProtocolHandler}.
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
 * @module
 */
import { Buffer } from 'node:buffer';
import { type Data, toBytes } from './bytes.js';
import { CloseCode, isValidCloseCode, protocolError, ProtocolError, type ProtocolErrorCode } from './errors.js';
import { closePayload, encodeFrame, encodeTextFrame, MAX_CLOSE_REASON, MAX_CONTROL_PAYLOAD, Opcode } from './frame.js';
import { type MaskSource, randomMask, xorMask, xorMaskCopy } from './mask.js';
import { checkOptionNames } from './options.js';
import { isValidUtf8, Utf8Validator } from './utf8.js';

/** Connection states, numbered as the WHATWG `WebSocket.readyState`. */
export const ReadyState = {
  CONNECTING: 0,
  OPEN: 1,
  CLOSING: 2,
  CLOSED: 3,
} as const;

/** Defaults of {@link ProtocolOptions}. */
export const PROTOCOL_DEFAULTS = {
  /** 64 MiB. */
  maxMessageSize: 64 * 1024 * 1024,
  /** 16 bytes charged per fragment after a message's first. */
  fragmentOverhead: 16,
} as const;

/** Options of {@link Protocol}. */
export interface ProtocolOptions {
  /** `'server'` expects masked frames and sends unmasked ones; `'client'` the reverse (RFC 6455 §5.1). */
  role: 'server' | 'client';
  /**
   * Largest message accepted, in bytes, counting each fragment after the first as `fragmentOverhead` more bytes.
   * A message over it closes the connection with 1009 as soon as the header that crosses it arrives.
   * Default: 64 MiB (67,108,864).
   */
  maxMessageSize?: number;
  /** Largest single frame payload accepted, in bytes; 1009 above it. Default: `maxMessageSize`. */
  maxFrameSize?: number;
  /** Bytes charged per fragment after the first toward `maxMessageSize`, for the cost of holding a part. Default: 16. */
  fragmentOverhead?: number;
  /** An extension that uses RSV1 (permessage-deflate) was negotiated. Default: false. */
  rsv1?: boolean;
  /** Answer pings with pongs automatically. Default: true. */
  autoPong?: boolean;
  /** Reject non-minimal length encodings with 1002. Default: false (accept them, as most peers do). */
  strictLengths?: boolean;
  /** Where client masking keys come from. Default: {@link randomMask} (CSPRNG pool). Inject one only in tests. */
  maskSource?: MaskSource;
}

const PROTOCOL_OPTION_NAMES: ReadonlySet<string> = new Set(
  Object.keys({
    role: true,
    maxMessageSize: true,
    maxFrameSize: true,
    fragmentOverhead: true,
    rsv1: true,
    autoPong: true,
    strictLengths: true,
    maskSource: true,
  } as const satisfies Record<keyof ProtocolOptions, true>),
);

/** Receives what the protocol produces. Every method is called synchronously from `receive` or a send call. */
export interface ProtocolHandler {
  /** A complete message. `data` is owned by the receiver. `compressed`: RSV1 was set (an extension's payload). */
  onMessage(data: Buffer, isBinary: boolean, compressed: boolean): void;
  /** A ping arrived (already answered when `autoPong` is on). */
  onPing(data: Buffer): void;
  /** A pong arrived. */
  onPong(data: Buffer): void;
  /**
   * The peer's close frame arrived: `code` is 1005 when it carried none. The reply (when this side had not
   * closed yet) is already written.
   */
  onClose(code: number, reason: string): void;
  /** The peer broke the protocol or a limit. The close frame with `error.closeCode` is already written. */
  onError(error: ProtocolError): void;
  /** Bytes to send, in order. A pair is a header and its payload: write both, corked. */
  onWrite(data: Buffer | [Buffer, Uint8Array]): void;
  /**
   * The transport should close the TCP connection now, once written data is flushed: after a failure, or on the
   * server once the closing handshake is complete (RFC 6455 §7.1.1: the server closes first).
   */
  onEnd(): void;
}

const HEADER = 0;
const PAYLOAD = 1;
const DONE = 2;

/** Pieces under 1 KiB, or under a quarter of the read that holds them, are copied into blocks of this size. */
const BLOCK_SIZE = 16 * 1024;
/** Smallest piece kept as a view: below it a Buffer object's own overhead (~200 bytes) would dominate. */
const MIN_VIEW = 1024;

const EMPTY = Buffer.alloc(0);
/** A shared empty list: a connection allocates its own only once it holds something (never pushed to). */
const NONE: Buffer[] = [];

/**
 * One WebSocket connection's protocol state, for either role. Create it once the opening handshake is done
 * (it starts OPEN).
 */
export class Protocol {
  /** {@link ReadyState} value. */
  readyState: number = ReadyState.OPEN;
  /** Whether a close frame was received. */
  closeReceived = false;
  /** Whether a close frame was sent. */
  closeSent = false;
  /** The peer's close code (1005 when its close frame had none, 1006 until one arrives). */
  closeCode: number = CloseCode.ABNORMAL;
  /** The peer's close reason. */
  closeReason = '';

  readonly role: 'server' | 'client';
  readonly maxMessageSize: number;
  readonly maxFrameSize: number;
  readonly fragmentOverhead: number;
  readonly rsv1Allowed: boolean;
  readonly autoPong: boolean;
  readonly strictLengths: boolean;
  /** Mask source for frames this side sends: null for a server. */
  readonly mask: MaskSource | null;

  private readonly handler: ProtocolHandler;

  // Parser state.
  private state = HEADER;
  /** Allocated on the first header split across reads. */
  private scratch: Buffer | null = null;
  private scratchLength = 0;
  private fin = false;
  private rsv1 = false;
  private opcode = 0;
  private masked = false;
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
  private messageCompressed = false;
  private messageCost = 0;
  private parts: Buffer[] = NONE;
  private partsLength = 0;
  /** Bytes of the reads that parts kept as views belong to (each read once), and the bytes of those views. */
  private viewBytes = 0;
  private viewedLength = 0;
  private lastView: ArrayBufferLike | null = null;
  private block: Buffer | null = null;
  private blockLength = 0;
  /** Allocated on the first text message that arrives in pieces. */
  private utf8Validator: Utf8Validator | null = null;
  private validateText = false;

  // Input held while paused.
  private paused = false;
  /** Set during {@link receiveBorrowed}: the chunk is lent, so nothing may keep a view of it. */
  private borrowed = false;
  private pending: Buffer[] = NONE;

  // Outgoing fragmentation: 0 when no fragmented message is open, else its opcode.
  private sendingOpcode = 0;

  constructor(options: ProtocolOptions, handler: ProtocolHandler) {
    checkOptionNames('Protocol', options, PROTOCOL_OPTION_NAMES);
    if (options.role !== 'server' && options.role !== 'client') {
      throw new TypeError(`options.role must be 'server' or 'client', got ${String(options.role)}`);
    }
    this.role = options.role;
    this.maxMessageSize = sizeOption('maxMessageSize', options.maxMessageSize, PROTOCOL_DEFAULTS.maxMessageSize);
    this.maxFrameSize = sizeOption('maxFrameSize', options.maxFrameSize, this.maxMessageSize);
    this.fragmentOverhead = sizeOption('fragmentOverhead', options.fragmentOverhead, PROTOCOL_DEFAULTS.fragmentOverhead);
    this.rsv1Allowed = options.rsv1 === true;
    this.autoPong = options.autoPong !== false;
    this.strictLengths = options.strictLengths === true;
    this.mask = this.role === 'client' ? (options.maskSource ?? randomMask) : null;
    if (options.maskSource !== undefined && typeof options.maskSource !== 'function') {
      throw new TypeError('options.maskSource must be a function (target, offset) => void');
    }
    this.handler = handler;
  }

  // ───────────────────────────── receiving ─────────────────────────────

  /**
   * Like {@link receive}, for bytes that are only lent for the duration of the call (a transport's shared read
   * buffer): they may be unmasked in place, but whatever is kept or delivered is copied first (a payload spread over
   * reads is copied into its message buffer anyway, so a large frame costs no extra copy).
   */
  receiveBorrowed(chunk: Buffer): void {
    this.borrowed = true;
    try {
      this.receive(chunk);
    } finally {
      this.borrowed = false;
    }
  }

  /**
   * Feeds bytes from the peer. The buffer is owned by the protocol from then on: payloads are unmasked in place
   * and delivered as views of it. Input after a close frame or a violation is ignored.
   */
  receive(chunk: Buffer): void {
    if (this.paused) {
      if (this.pending === NONE) this.pending = [];
      this.pending.push(this.borrowed ? Buffer.from(chunk) : chunk);
      return;
    }
    const length = chunk.length;
    let offset = 0;
    while (offset < length && this.state !== DONE) {
      if (this.paused) {
        // This chunk was the oldest input not yet processed: its rest goes before anything that arrived since.
        if (this.pending === NONE) this.pending = [];
        this.pending.unshift(this.borrowed ? Buffer.from(chunk.subarray(offset)) : chunk.subarray(offset));
        return;
      }
      if (this.state === HEADER) {
        offset = this.readHeader(chunk, offset);
      } else {
        offset = this.readPayload(chunk, offset);
      }
    }
  }

  /**
   * Stops processing input after the current frame; later input is kept, in order, until {@link resume}. An
   * asynchronous stage (decompression) calls it from `onMessage` so that what follows a message — other messages,
   * the close frame — is handled only once that message is delivered.
   */
  pause(): void {
    this.paused = true;
  }

  /** Processes the input kept since {@link pause}, then continues normally. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    while (!this.paused && this.pending.length > 0) this.receive(this.pending.shift()!);
  }

  /**
   * Payload bytes of the frame being received that have not arrived yet (0 between frames, after the end, or while
   * paused). A transport may read them into a buffer of their own rather than a shared one.
   */
  get payloadPending(): number {
    return this.state === PAYLOAD && !this.paused ? this.payloadLength - this.payloadRead : 0;
  }

  /** Whether input is held by {@link pause}. */
  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * Fails the connection for a violation found outside the parser (an extension's decoding error, or its size
   * limit): writes the close frame with `error.closeCode`, ignores further input, reports `onError`, then `onEnd`.
   */
  failWith(error: ProtocolError): void {
    if (this.state === DONE && this.closeReceived) return;
    this.paused = false;
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
    const fin = (this.fin = (b0 & 0x80) !== 0);
    const rsv1 = (this.rsv1 = (b0 & 0x40) !== 0);
    const opcode = (this.opcode = b0 & 0x0f);
    const masked = (this.masked = (b1 & 0x80) !== 0);
    let length = b1 & 0x7f;
    let p = at + 2;
    if (length === 126) {
      length = (b[p] << 8) | b[p + 1];
      p += 2;
      if (length < 126 && this.strictLengths) return this.fail('LENGTH_NOT_MINIMAL', 'non-minimal 16-bit payload length');
    } else if (length === 127) {
      const hi = b.readUInt32BE(p);
      const lo = b.readUInt32BE(p + 4);
      p += 8;
      // RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
      if (hi > 0x7fffffff) return this.fail('LENGTH_64BIT_MSB', '64-bit payload length with the most significant bit set');
      // Lengths of 2^53 and more are not exact as numbers; they exceed every limit anyway.
      length = hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x100000000 + lo;
      if (length < 65536 && this.strictLengths) return this.fail('LENGTH_NOT_MINIMAL', 'non-minimal 64-bit payload length');
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
    if (masked !== (this.role === 'server')) {
      return this.role === 'server'
        ? this.fail('MASK_EXPECTED', 'client frame is not masked')
        : this.fail('MASK_UNEXPECTED', 'server frame is masked');
    }
    // RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them.
    if ((b0 & 0x30) !== 0 || (rsv1 && !this.rsv1Allowed)) {
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
      const cost = this.messageCost + length + this.fragmentOverhead;
      if (length > this.maxFrameSize) return this.fail('FRAME_TOO_BIG', `frame of ${length} bytes over the ${this.maxFrameSize}-byte limit`);
      if (cost > this.maxMessageSize) return this.fail('MESSAGE_TOO_BIG', `message over the ${this.maxMessageSize}-byte limit`);
      this.messageCost = cost;
      // What is held counts too: views keep whole reads alive. Copy them out rather than hold more than the limit.
      if (cost + this.viewBytes - this.viewedLength > this.maxMessageSize) this.compact();
    } else if (opcode === Opcode.TEXT || opcode === Opcode.BINARY) {
      if (this.messageOpcode !== 0) return this.fail('EXPECTED_CONTINUATION', 'new data frame inside a fragmented message');
      if (length > this.maxFrameSize) return this.fail('FRAME_TOO_BIG', `frame of ${length} bytes over the ${this.maxFrameSize}-byte limit`);
      if (length > this.maxMessageSize) return this.fail('MESSAGE_TOO_BIG', `message over the ${this.maxMessageSize}-byte limit`);
      this.messageOpcode = opcode;
      this.messageCompressed = rsv1;
      this.messageCost = length;
      this.validateText = opcode === Opcode.TEXT && !rsv1;
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
      if (this.masked) xorMask(chunk, offset, end, this.k0, this.k1, this.k2, this.k3);
      this.state = HEADER;
      this.frameComplete(chunk.subarray(offset, end));
      return end;
    }
    const n = available < remaining ? available : remaining;
    const end = offset + n;
    if (this.opcode < 0x8 && (this.target !== null || (this.payloadRead === 0 && n >= MIN_VIEW && n * 4 >= this.payloadLength))) {
      return this.directPiece(chunk, offset, end);
    }
    if (this.masked) this.unmaskPiece(chunk, offset, end, null);
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
    if (this.masked) this.unmaskPiece(chunk, offset, end, target);
    else chunk.copy(target, at, offset, end);
    this.payloadRead += end - offset;
    if (this.validateText && !this.utf8.push(target, at, this.payloadRead)) {
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
    if (this.opcode >= 0x8) return this.controlFrame(this.borrowed ? Buffer.from(payload) : payload);
    if (this.fin && this.partsLength === 0 && this.blockLength === 0) {
      // Nothing held (a single-frame message, or earlier fragments were empty): deliver the view itself.
      if (this.validateText && !isValidUtf8(payload)) return this.fail('INVALID_UTF8', 'invalid UTF-8 in a text message');
      return this.deliver(this.borrowed ? Buffer.from(payload) : payload);
    }
    this.dataPiece(payload, true);
  }

  /** A piece of a data frame's payload; `last` when it ends the frame. */
  private dataPiece(piece: Buffer, last: boolean): void {
    if (this.validateText && !this.utf8.push(piece)) return this.fail('INVALID_UTF8', 'invalid UTF-8 in a text message');
    this.hold(piece);
    if (last) this.frameEnd();
  }

  /** A data frame's last piece is held: on the message's final frame, check UTF-8 is complete and deliver. */
  private frameEnd(): void {
    if (!this.fin) return;
    if (this.validateText && !this.utf8.end()) return this.fail('INVALID_UTF8', 'invalid UTF-8 in a text message');
    this.deliver(this.takeHeld());
  }

  private deliver(data: Buffer): void {
    const isBinary = this.messageOpcode === Opcode.BINARY;
    const compressed = this.messageCompressed;
    this.messageOpcode = 0;
    this.messageCompressed = false;
    this.messageCost = 0;
    this.handler.onMessage(data, isBinary, compressed);
  }

  /** Keeps a piece of the message being assembled: as a view when it is most of its read, else copied. */
  private hold(piece: Buffer): void {
    const n = piece.length;
    if (n === 0) return;
    // A view keeps its whole read alive: allowed while the message's cost plus what views hold beyond their own
    // bytes stays within the limit (a peer padding its fragments with pongs pays for the padding).
    const extra = piece.buffer === this.lastView ? 0 : piece.buffer.byteLength;
    if (!this.borrowed && n >= MIN_VIEW && n * 4 >= piece.buffer.byteLength && this.messageCost + this.viewBytes + extra - this.viewedLength - n <= this.maxMessageSize) {
      this.viewBytes += extra;
      this.viewedLength += n;
      this.lastView = piece.buffer;
      this.flushBlock();
      if (this.parts === NONE) this.parts = [];
      this.parts.push(piece);
      this.partsLength += n;
      return;
    }
    let at = 0;
    while (at < n) {
      if (this.block === null) this.block = Buffer.allocUnsafe(BLOCK_SIZE);
      const room = this.block.length - this.blockLength;
      const take = n - at < room ? n - at : room;
      this.block.set(piece.subarray(at, at + take), this.blockLength);
      this.blockLength += take;
      at += take;
      if (this.blockLength === this.block.length) this.flushBlock();
    }
  }

  private flushBlock(): void {
    if (this.blockLength === 0) return;
    const block = this.block!;
    if (this.parts === NONE) this.parts = [];
    this.parts.push(block.subarray(0, this.blockLength));
    this.partsLength += this.blockLength;
    this.block = this.blockLength === block.length ? null : block.subarray(this.blockLength);
    this.blockLength = 0;
  }

  /** Copies the parts held so far into one buffer of their size, releasing the reads views kept alive. */
  private compact(): void {
    this.flushBlock();
    const whole = Buffer.allocUnsafeSlow(this.partsLength);
    let at = 0;
    for (const part of this.parts) {
      whole.set(part, at);
      at += part.length;
    }
    this.parts = [whole];
    this.viewBytes = this.viewedLength = 0;
    this.lastView = null;
  }

  /** The assembled message: a view when it is one part, else one exact-size copy. */
  private takeHeld(): Buffer {
    this.flushBlock();
    this.block = null;
    const parts = this.parts;
    const total = this.partsLength;
    this.parts = NONE;
    this.partsLength = 0;
    this.viewBytes = this.viewedLength = 0;
    this.lastView = null;
    if (parts.length === 0) return EMPTY;
    if (parts.length === 1 && parts[0].length * 2 >= parts[0].buffer.byteLength) return parts[0];
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  private controlPiece(chunk: Buffer, start: number, end: number, last: boolean): void {
    if (this.control === null) this.control = Buffer.allocUnsafe(MAX_CONTROL_PAYLOAD);
    chunk.copy(this.control, this.payloadRead - (end - start), start, end);
    if (last) this.controlFrame(Buffer.from(this.control.subarray(0, this.payloadLength)));
  }

  private controlFrame(payload: Buffer): void {
    const opcode = this.opcode;
    if (opcode === Opcode.PING) {
      if (this.autoPong && !this.closeSent) this.handler.onWrite(encodeFrame(Opcode.PONG, payload, true, false, this.mask));
      this.handler.onPing(payload);
    } else if (opcode === Opcode.PONG) {
      this.handler.onPong(payload);
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
    this.closeReceived = true;
    this.closeCode = code;
    this.closeReason = reason;
    this.state = DONE;
    this.releaseMessage();
    if (!this.closeSent) {
      // RFC 6455 §5.5.1: reply with a close frame, typically echoing the status code received.
      this.writeClose(code === CloseCode.NO_STATUS ? undefined : code, '');
    }
    this.readyState = ReadyState.CLOSED;
    this.handler.onClose(code, reason);
    if (this.role === 'server') this.handler.onEnd();
  }

  private fail(code: ProtocolErrorCode, message: string): void {
    this.failed(protocolError(code, message));
  }

  private failed(error: ProtocolError): void {
    const message = error.message;
    this.state = DONE;
    this.releaseMessage();
    if (!this.closeSent) this.writeClose(error.closeCode, truncateReason(message));
    this.readyState = ReadyState.CLOSING;
    this.handler.onError(error);
    this.handler.onEnd();
  }

  private get utf8(): Utf8Validator {
    return (this.utf8Validator ??= new Utf8Validator());
  }

  private releaseMessage(): void {
    this.target = null;
    this.parts = NONE;
    this.partsLength = 0;
    this.viewBytes = this.viewedLength = 0;
    this.lastView = null;
    this.block = null;
    this.blockLength = 0;
    this.messageOpcode = 0;
    this.utf8Validator?.reset();
  }

  // ───────────────────────────── sending ─────────────────────────────

  /**
   * Sends a whole message: a string as text, bytes as binary (or as text with `isBinary = false`, when they are
   * known to be UTF-8). `rsv1` marks an extension's payload. Returns false, sending nothing, once a close frame
   * was sent. Throws when a fragmented message is being sent (finish it with {@link sendFragment} first).
   */
  send(data: Data, isBinary = typeof data !== 'string', rsv1 = false): boolean {
    const bytes = typeof data === 'string' ? data : toBytes(data);
    if (this.closeSent) return false;
    if (this.sendingOpcode !== 0) {
      throw new Error('a fragmented message is being sent: end it with sendFragment(data, true) before sending another');
    }
    const opcode = isBinary ? Opcode.BINARY : Opcode.TEXT;
    this.handler.onWrite(
      typeof bytes === 'string' ? encodeTextFrame(bytes, true, rsv1, this.mask, opcode) : encodeFrame(opcode, bytes, true, rsv1, this.mask),
    );
    return true;
  }

  /**
   * Sends one fragment of a message (RFC 6455 §5.4). The first fragment fixes the type (`isBinary`); `fin` ends
   * the message. Control frames may be sent between fragments. Returns false once a close frame was sent.
   */
  sendFragment(data: Data, fin: boolean, isBinary = typeof data !== 'string', rsv1 = false): boolean {
    const bytes = typeof data === 'string' ? data : toBytes(data);
    if (this.closeSent) return false;
    let opcode: number = Opcode.CONTINUATION;
    if (this.sendingOpcode === 0) {
      opcode = isBinary ? Opcode.BINARY : Opcode.TEXT;
      this.sendingOpcode = opcode;
    } else if (rsv1) {
      throw new Error('rsv1 may only be set on the first fragment of a message (RFC 7692 §6.1)');
    }
    if (fin) this.sendingOpcode = 0;
    this.handler.onWrite(
      typeof bytes === 'string' ? encodeTextFrame(bytes, fin, rsv1, this.mask, opcode) : encodeFrame(opcode, bytes, fin, rsv1, this.mask),
    );
    return true;
  }

  /**
   * Sends a whole message framed beforehand (a prepared broadcast frame: header and payload, or the two apart). The
   * frame must suit this side's role (unmasked for a server) and carry RSV1 only when an extension allows it; the
   * protocol only checks that a whole message may go now. Returns false, sending nothing, once a close frame was
   * sent. Throws while a fragmented message is being sent, as {@link send} does.
   */
  sendFrame(frame: Buffer | [Buffer, Uint8Array]): boolean {
    if (this.closeSent) return false;
    if (this.sendingOpcode !== 0) {
      throw new Error('a fragmented message is being sent: end it with sendFragment(data, true) before sending another');
    }
    this.handler.onWrite(frame);
    return true;
  }

  /** Whether a fragmented message is open: its first fragment was sent and its final one not yet. */
  get sendingFragments(): boolean {
    return this.sendingOpcode !== 0;
  }

  /** Sends a ping with up to 125 bytes of payload. Returns false once a close frame was sent. */
  ping(data: Data = EMPTY): boolean {
    return this.sendControl(Opcode.PING, data, 'ping');
  }

  /** Sends an unsolicited or manual pong (RFC 6455 §5.5.3). Returns false once a close frame was sent. */
  pong(data: Data = EMPTY): boolean {
    return this.sendControl(Opcode.PONG, data, 'pong');
  }

  private sendControl(opcode: number, data: Data, what: string): boolean {
    const payload = typeof data === 'string' ? Buffer.from(data) : toBytes(data, `${what} payload`);
    if (payload.length > MAX_CONTROL_PAYLOAD) {
      throw new RangeError(`${what} payload is ${payload.length} bytes; control frames carry at most 125 (RFC 6455 §5.5)`);
    }
    if (this.closeSent) return false;
    this.handler.onWrite(encodeFrame(opcode, payload, true, false, this.mask));
    return true;
  }

  /**
   * Starts the closing handshake (RFC 6455 §7.1.2): sends a close frame and moves to CLOSING. `code` must be 1000,
   * 3000–4999 or a registered code that may be sent (1001–1003, 1007–1014); `reason` at most 123 UTF-8 bytes and
   * only with a code. Does nothing when a close frame was already sent.
   */
  close(code?: number, reason = ''): void {
    validateClose(code, reason);
    if (this.closeSent) return;
    this.writeClose(code, reason);
    if (this.readyState === ReadyState.OPEN) this.readyState = ReadyState.CLOSING;
  }

  private writeClose(code: number | undefined, reason: string): void {
    this.closeSent = true;
    this.handler.onWrite(encodeFrame(Opcode.CLOSE, closePayload(code, reason), true, false, this.mask));
  }

  /**
   * The transport was closed (EOF or error). Moves to CLOSED; returns the code to report: the peer's close code
   * when its close frame came, else 1006.
   */
  transportClosed(): number {
    this.readyState = ReadyState.CLOSED;
    this.state = DONE;
    this.paused = false;
    this.pending = NONE;
    this.releaseMessage();
    return this.closeReceived ? this.closeCode : CloseCode.ABNORMAL;
  }

  /**
   * Bytes currently held for a message being assembled (for memory accounting and tests): what is held, not only
   * what was accepted — a part kept as a view of a read counts that whole read.
   */
  get bufferedMessageBytes(): number {
    return this.partsLength + this.viewBytes - this.viewedLength + this.blockLength + (this.target === null ? 0 : this.target.length);
  }
}

/**
 * Checks the arguments of a close the application asks for: `code` 1000, 3000–4999 or a registered code that may be
 * sent (1001–1003, 1007–1014), `reason` a string of at most 123 UTF-8 bytes and only with a code. RangeError or
 * TypeError otherwise.
 */
export function validateClose(code: number | undefined, reason = ''): void {
  if (code !== undefined && (typeof code !== 'number' || !Number.isInteger(code) || !isValidCloseCode(code))) {
    throw new RangeError(`close code ${String(code)} cannot be sent: use 1000, 3000–4999, or 1001–1003/1007–1014`);
  }
  if (typeof reason !== 'string') throw new TypeError('close reason must be a string');
  if (Buffer.byteLength(reason) > MAX_CLOSE_REASON) {
    throw new RangeError(`close reason is ${Buffer.byteLength(reason)} bytes; at most 123 are allowed (RFC 6455 §5.5)`);
  }
  if (code === undefined && reason !== '') throw new TypeError('a close reason needs a close code');
}

/** Header length announced by the second header byte. */
function headerLength(b1: number): number {
  const len = b1 & 0x7f;
  return (len === 126 ? 4 : len === 127 ? 10 : 2) + (b1 & 0x80 ? 4 : 0);
}

function truncateReason(message: string): string {
  if (Buffer.byteLength(message) <= MAX_CLOSE_REASON) return message;
  return message.slice(0, 100);
}

function sizeOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new RangeError(`options.${name} must be a non-negative integer number of bytes, got ${String(value)}`);
  }
  return value;
}

export { ProtocolError };
