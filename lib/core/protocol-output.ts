/**
 * What a {@link Protocol} produces, as its base class: the option values and their accessors; events (queued for
 * `nextEvent` in pull mode, handed to the handler in push mode) and what the protocol writes when one is taken (the
 * pong, the close reply); the bytes to send (the slots a pull-mode transport drains, or the handler's `onWrite`);
 * and everything that writes frames — messages, fragments, prepared frames, pings, pongs and the close frame. The
 * receiving half (the frame parser and message assembly) is `Protocol` itself, in `protocol.ts`. Only `Protocol`
 * is ever instantiated, so its instances share one hidden class and calls between the two halves stay monomorphic
 * (inherited methods are found through the same inline caches as own ones). Not exported from the package.
 *
 * @module
 */
import { Buffer } from 'node:buffer';
import { type Data, toBytes } from './bytes.js';
import { truncateReason, validateClose } from './close.js';
import { CloseCode, type ProtocolError } from './errors.js';
import { closePayload, encodeFrame, encodeTextFrame, MAX_CONTROL_PAYLOAD, Opcode } from './frame.js';
import type { MaskSource } from './mask.js';
import { checkOptionNames } from './options.js';
import { handOn, type ProtocolEvent, ProtocolEventType, type ProtocolHandler } from './protocol-events.js';
import { PROTOCOL_OPTION_NAMES, type ProtocolOptions, type ProtocolSettings, ReadyState, settingsOf } from './protocol-settings.js';

/** An empty payload (events without bytes, empty pings). */
export const EMPTY = Buffer.alloc(0);
const NO_EVENTS: Array<number | Buffer | ProtocolError> = [];
const NO_OUT: Array<Buffer | Uint8Array | undefined> = [];
/** Largest output array a protocol keeps between batches (slots); a longer one is let go once emptied. */
const OUT_KEPT = 16;

/** The bit of `flags` this half owns: a close frame was sent (the other bits are listed in `protocol.ts`). */
const CLOSE_SENT = 64;

/** The output half of {@link Protocol} (see the module's comment); use `Protocol`. */
export class ProtocolOutput {
  /** {@link ReadyState} value. */
  readyState: number = ReadyState.OPEN;
  /** The peer's close code (1005 when its close frame had none, 1006 until one arrives). */
  closeCode: number = CloseCode.ABNORMAL;
  /** The peer's close reason. */
  closeReason = '';
  /** Pull mode: the error of the {@link ProtocolEventType.ERROR} event (set when the failure is found). */
  eventError: ProtocolError | null = null;

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
  /** Pull mode: events not drained yet, as [type, data] pairs in `events[eventsRead, eventsLength)`. */
  private events: Array<number | Buffer | ProtocolError> = NO_EVENTS;
  private eventsRead = 0;
  private eventsLength = 0;

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

  // ───────────────────────────── events ─────────────────────────────

  /**
   * Pull mode: the next event produced since the last drain, as a {@link ProtocolEventType} (0 when none is left);
   * its bytes in {@link eventData}, its error in {@link eventError}. Allocates nothing.
   */
  nextEvent(): number {
    const i = this.eventsRead;
    const events = this.events;
    if (i === this.eventsLength) {
      if (i !== 0) {
        // Drained: the slots let go of what they held (numbers, not pointers: no write barrier).
        for (let j = 1; j < i; j += 2) events[j] = 0;
        this.eventsRead = this.eventsLength = 0;
      }
      return 0;
    }
    const type = events[i] as number;
    this.eventsRead = i + 2;
    if (type >= ProtocolEventType.PING) this.answer(type, events[i + 1] as Buffer);
    return type;
  }

  /**
   * Pull mode: the bytes of the event {@link nextEvent} returned last (a message, a ping's or a pong's payload);
   * empty for other events, and once `nextEvent` returned 0. Owned by the caller.
   */
  get eventData(): Buffer {
    const i = this.eventsRead;
    return i === 0 ? EMPTY : (this.events[i - 1] as Buffer);
  }

  /** Pull mode: every event not drained yet, as objects (the convenient form of {@link nextEvent}). */
  eventsReceived(): ProtocolEvent[] {
    const list: ProtocolEvent[] = [];
    for (let type = this.nextEvent(); type !== 0; type = this.nextEvent()) {
      const data = this.eventData;
      if (type <= ProtocolEventType.BINARY_COMPRESSED) {
        list.push({ type: 'message', data, isBinary: (type & 1) === 0, compressed: type >= ProtocolEventType.TEXT_COMPRESSED });
      } else if (type === ProtocolEventType.PING) list.push({ type: 'ping', data });
      else if (type === ProtocolEventType.PONG) list.push({ type: 'pong', data });
      else if (type === ProtocolEventType.CLOSE) list.push({ type: 'close', code: this.closeCode, reason: this.closeReason });
      else if (type === ProtocolEventType.ERROR) list.push({ type: 'error', error: this.eventError! });
      else list.push({ type: 'end' });
    }
    return list;
  }

  /** Queues (pull) or hands on (push) an event. */
  protected event(type: number, data: Buffer | ProtocolError): void {
    // (Pull mode keeps an error in `eventError` and EMPTY in its slot, so that a slot always holds bytes.)
    const h = this.handler;
    if (h === null) {
      if (type === ProtocolEventType.ERROR) {
        this.eventError = data as ProtocolError;
        data = EMPTY;
      }
      let events = this.events;
      if (events === NO_EVENTS) events = this.events = [];
      const i = this.eventsLength;
      events[i] = type;
      events[i + 1] = data;
      this.eventsLength = i + 2;
      return;
    }
    if (type >= ProtocolEventType.PING) this.answer(type, data);
    handOn(h, type, data, this.closeCode, this.closeReason);
  }

  /**
   * What the protocol writes for an event, when the event is taken (pull) or handed on (push) rather than when its
   * frame was parsed: so a message that came before is handled first (the application's reply to it goes before our
   * close frame, as the peer sent them). A ping's pong (`autoPong`), the reply to a close frame, the close frame of
   * a failure.
   */
  private answer(type: number, data: Buffer | ProtocolError): void {
    // The state a close or a failure leads to is taken on with the event too: while the messages parsed before it
    // are delivered, the connection is still open (an application that checks `readyState` before replying to them
    // sees OPEN, as when the frames arrive in separate reads).
    if (type === ProtocolEventType.CLOSE) this.readyState = ReadyState.CLOSED;
    else if (type === ProtocolEventType.ERROR) this.readyState = ReadyState.CLOSING;
    if (this.closeSent) return;
    if (type === ProtocolEventType.PING) {
      if (this.settings.autoPong) this.write(encodeFrame(Opcode.PONG, data as Buffer, true, false, this.settings.mask));
    } else if (type === ProtocolEventType.CLOSE) {
      // RFC 6455 §5.5.1: reply with a close frame, typically echoing the status code received.
      const code = this.closeCode;
      this.writeClose(code === CloseCode.NO_STATUS ? undefined : code, '');
    } else if (type === ProtocolEventType.ERROR) {
      const error = this.handler === null ? this.eventError! : (data as ProtocolError);
      this.writeClose(error.closeCode, truncateReason(error.message));
    }
  }

  // ───────────────────────────── bytes to send ─────────────────────────────

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

  private writeClose(code: number | undefined, reason: string): void {
    this.flags |= CLOSE_SENT;
    this.write(encodeFrame(Opcode.CLOSE, closePayload(code, reason), true, false, this.settings.mask));
  }
}
