/**
 * The sending half of {@link Protocol}, as its base class: the option values and their accessors, the output (the
 * slots a pull-mode transport drains, or the handler's `onWrite` in push mode), and everything that writes frames —
 * messages, fragments, prepared frames, pings, pongs and the close frame. The receiving half (the frame parser,
 * message assembly and events) is `Protocol` itself, in `protocol.ts`; only `Protocol` is ever instantiated, so the
 * instances share one hidden class and every call here stays monomorphic. Not exported from the package.
 *
 * @module
 */
import { Buffer } from 'node:buffer';
import { type Data, toBytes } from './bytes.js';
import { validateClose } from './close.js';
import { closePayload, encodeFrame, encodeTextFrame, MAX_CONTROL_PAYLOAD, Opcode } from './frame.js';
import type { MaskSource } from './mask.js';
import { checkOptionNames } from './options.js';
import type { ProtocolHandler } from './protocol-events.js';
import { PROTOCOL_OPTION_NAMES, type ProtocolOptions, type ProtocolSettings, ReadyState, settingsOf } from './protocol-settings.js';

/** An empty payload (events without bytes, empty pings). */
export const EMPTY = Buffer.alloc(0);
const NO_OUT: Array<Buffer | Uint8Array | undefined> = [];
/** Largest output array a protocol keeps between batches (slots); a longer one is let go once emptied. */
const OUT_KEPT = 16;

/** The bit of `flags` this half owns: a close frame was sent (the other bits are listed in `protocol.ts`). */
export const CLOSE_SENT = 64;

/** The sending half of {@link Protocol} (see the module's comment); use `Protocol`. */
export class ProtocolOutput {
  /** {@link ReadyState} value. */
  readyState: number = ReadyState.OPEN;

  /** The option values, shared with every protocol made with the same ones. */
  protected readonly settings: ProtocolSettings;
  /** Push mode's handler; null in pull mode. */
  protected readonly handler: ProtocolHandler | null;
  /** Booleans, as bits (FIN, RSV1, … in `protocol.ts`; CLOSE_SENT here). */
  protected flags = 0;

  // Outgoing fragmentation: 0 when no fragmented message is open, else its opcode.
  private sendingOpcode = 0;

  /** Pull mode: bytes to send in `out[0, outCount)` (a frame's header and payload take two slots). */
  private out: Array<Buffer | Uint8Array | undefined> = NO_OUT;
  private outCount = 0;
  private outBytes = 0;

  /**
   * `handler` given: push mode (every event and write calls it as it happens). Omitted or null: pull mode (events
   * and bytes to send are queued until drained).
   */
  constructor(options: ProtocolOptions, handler: ProtocolHandler | null = null) {
    checkOptionNames('Protocol', options, PROTOCOL_OPTION_NAMES);
    this.settings = settingsOf(options);
    this.handler = handler ?? null;
  }

  /** `'server'` or `'client'`. */
  get role(): 'server' | 'client' {
    return this.settings.role;
  }
  /** Largest message accepted, in bytes. */
  get maxMessageSize(): number {
    return this.settings.maxMessageSize;
  }
  /** Largest frame payload accepted, in bytes. */
  get maxFrameSize(): number {
    return this.settings.maxFrameSize;
  }
  /** Bytes charged per fragment after a message's first. */
  get fragmentOverhead(): number {
    return this.settings.fragmentOverhead;
  }
  /** Whether RSV1 (an extension) is accepted. */
  get rsv1Allowed(): boolean {
    return this.settings.rsv1;
  }
  /** Whether pings are answered automatically. */
  get autoPong(): boolean {
    return this.settings.autoPong;
  }
  /** Whether non-minimal length encodings are rejected. */
  get strictLengths(): boolean {
    return this.settings.strictLengths;
  }
  /** Mask source for frames this side sends: null for a server. */
  get mask(): MaskSource | null {
    return this.settings.mask;
  }
  /** Whether a close frame was sent. */
  get closeSent(): boolean {
    return (this.flags & CLOSE_SENT) !== 0;
  }

  // ───────────────────────────── output ─────────────────────────────

  /**
   * Pull mode: the bytes to send, in order, taken from the protocol (a new array; the protocol keeps none of them).
   * Write them in one batch (`writev`, or cork/uncork).
   */
  dataToSend(): Array<Buffer | Uint8Array> {
    const list = this.out.slice(0, this.outCount) as Array<Buffer | Uint8Array>;
    this.clearOutput();
    return list;
  }

  /**
   * Pull mode, for transports that batch without copying the list: the slots holding the bytes to send are
   * `output[0, outputCount)` (header and payload of a frame in two slots); {@link clearOutput} empties them once
   * they are handed on. The array is reused: do not keep it.
   */
  get output(): ReadonlyArray<Buffer | Uint8Array | undefined> {
    return this.out;
  }

  /** Pull mode: how many slots of {@link output} hold bytes to send. */
  get outputCount(): number {
    return this.outCount;
  }

  /** Pull mode: the bytes to send, in total. */
  get outputBytes(): number {
    return this.outBytes;
  }

  /**
   * Pull mode: drops the output from slot `from` on (default 0: all of it; the transport took it). The array is
   * kept unless a burst made it large.
   */
  clearOutput(from = 0): void {
    const n = this.outCount;
    const out = this.out;
    this.outCount = from;
    if (from === 0) {
      this.outBytes = 0;
      if (n > OUT_KEPT) this.out = NO_OUT;
      else for (let i = 0; i < n; i++) out[i] = undefined;
      return;
    }
    for (let i = from; i < n; i++) {
      this.outBytes -= out[i]!.length;
      out[i] = undefined;
    }
  }

  /**
   * Pull mode: appends bytes framed elsewhere to the output, after what is there: a frame prepared once for many
   * connections, or output a transport took and held back to keep it in order. Nothing is checked: the bytes must
   * be whole frames that suit this side (unmasked for a server).
   */
  pushOutput(data: Buffer | Uint8Array | [Buffer, Uint8Array]): void {
    this.write(data as Buffer | [Buffer, Uint8Array]);
  }

  /** Queues (pull) or hands on (push) bytes to send. */
  protected write(data: Buffer | [Buffer, Uint8Array]): void {
    if (this.handler !== null) return this.handler.onWrite(data);
    let out = this.out;
    if (out === NO_OUT) out = this.out = [];
    if (Array.isArray(data)) {
      out[this.outCount++] = data[0];
      out[this.outCount++] = data[1];
      this.outBytes += data[0].length + data[1].byteLength;
    } else {
      out[this.outCount++] = data;
      this.outBytes += data.length;
    }
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
    const mask = this.settings.mask;
    this.write(typeof bytes === 'string' ? encodeTextFrame(bytes, true, rsv1, mask, opcode) : encodeFrame(opcode, bytes, true, rsv1, mask));
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
    const mask = this.settings.mask;
    this.write(typeof bytes === 'string' ? encodeTextFrame(bytes, fin, rsv1, mask, opcode) : encodeFrame(opcode, bytes, fin, rsv1, mask));
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
    this.write(frame);
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
    this.write(encodeFrame(opcode, payload, true, false, this.settings.mask));
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

  protected writeClose(code: number | undefined, reason: string): void {
    this.flags |= CLOSE_SENT;
    this.write(encodeFrame(Opcode.CLOSE, closePayload(code, reason), true, false, this.settings.mask));
  }
}
