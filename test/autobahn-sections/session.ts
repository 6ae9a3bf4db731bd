/**
 * A fuzzingclient-style session against the testee server: one raw connection per case, reassembled messages from
 * the server, and the checks the suite makes — echoed messages and pongs in order, the close code of a failed
 * connection, and that the server closes TCP once the closing handshake is over.
 */
import type { Test } from 'tap';
import { closeCodeOf, closeFrame, delay, describe, type Frame, OP, type Peer, upgrade } from './wire.js';
import type { Head } from './wire.js';

export interface Message {
  opcode: number;
  payload: Buffer;
  /** RSV1 on the message's first frame (compressed). */
  compressed: boolean;
  /** Number of frames the message came in. */
  frames: number;
}

/** An expected message: [opcode, payload]. */
export type Expected = [number, Buffer | string];

const OPNAME: Record<number, string> = { 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' };

function show(op: number, payload: Buffer): string {
  const head = payload.subarray(0, 24).toString('hex');
  return `${OPNAME[op] ?? `op${op}`} (${payload.length} bytes${payload.length ? `: ${head}${payload.length > 24 ? '…' : ''}` : ''})`;
}

export class Session {
  private partial: { opcode: number; compressed: boolean; parts: Buffer[]; frames: number } | null = null;

  constructor(
    readonly t: Test,
    readonly peer: Peer,
    readonly response: Head,
    /** Whether RSV1 may appear (permessage-deflate negotiated). */
    readonly deflate = false,
  ) {}

  /** Opens a connection to the testee for one case; the socket is destroyed when the case ends. */
  static async open(t: Test, port: number, options: { extensions?: string; deflate?: boolean } = {}): Promise<Session> {
    const { peer, response } = await upgrade(port, { extensions: options.extensions });
    t.teardown(() => peer.destroy());
    return new Session(t, peer, response, options.deflate ?? options.extensions !== undefined);
  }

  write(data: Buffer): void {
    this.peer.write(data);
  }

  /**
   * The next control frame or complete data message from the server (fragments reassembled, control frames
   * in between returned first, as they arrived). Throws on a frame a server must never send.
   */
  async next(ms = 5000): Promise<Message> {
    for (;;) {
      const f: Frame = await this.peer.next(ms);
      if (f.masked) throw new Error(`server sent a masked frame: ${describe(f)}`);
      if (f.rsv2 || f.rsv3) throw new Error(`server set RSV2/RSV3: ${describe(f)}`);
      if (f.rsv1 && (!this.deflate || f.opcode === OP.CONT || f.opcode >= 8)) throw new Error(`server set RSV1 where it may not: ${describe(f)}`);
      if (f.opcode >= 8) {
        if (!f.fin || f.payload.length > 125) throw new Error(`server sent an invalid control frame: ${describe(f)}`);
        return { opcode: f.opcode, payload: f.payload, compressed: false, frames: 1 };
      }
      if (f.opcode === OP.CONT) {
        if (this.partial === null) throw new Error('server sent a continuation frame with no message open');
        this.partial.parts.push(f.payload);
        this.partial.frames++;
      } else if (f.opcode === OP.TEXT || f.opcode === OP.BINARY) {
        if (this.partial !== null) throw new Error('server started a message inside a fragmented one');
        this.partial = { opcode: f.opcode, compressed: f.rsv1, parts: [f.payload], frames: 1 };
      } else throw new Error(`server sent reserved opcode ${f.opcode}`);
      if (f.fin) {
        const p = this.partial!;
        this.partial = null;
        return { opcode: p.opcode, payload: p.parts.length === 1 ? p.parts[0] : Buffer.concat(p.parts), compressed: p.compressed, frames: p.frames };
      }
    }
  }

  /** Checks that the next messages are exactly `expected` (uncompressed), in order. */
  async expect(expected: Expected[], ms = 5000): Promise<void> {
    for (let i = 0; i < expected.length; i++) {
      const [op, raw] = expected[i];
      const want = typeof raw === 'string' ? Buffer.from(raw) : raw;
      const label = expected.length > 1 ? `#${i + 1} ` : '';
      let got: Message;
      try {
        got = await this.next(ms);
      } catch (e) {
        this.t.fail(`${label}expected ${show(op, want)}: ${(e as Error).message}`);
        return;
      }
      if (got.opcode === op && got.payload.equals(want)) {
        this.t.pass(`${label}${show(op, want)} received`);
      } else {
        this.t.fail(`${label}expected ${show(op, want)}, got ${show(got.opcode, got.payload)}`);
        return;
      }
    }
  }

  /**
   * Expects the server to fail (or close) the connection: the close frame with `code` (any of them when an array)
   * within `ms`, with no message before it, then the TCP close. Returns the close frame's payload.
   */
  async expectClose(code: number | number[], ms = 5000): Promise<Buffer | null> {
    const codes = Array.isArray(code) ? code : [code];
    let got: Message;
    try {
      got = await this.next(ms);
    } catch (e) {
      this.t.fail(`expected a close frame with ${codes.join(' or ')}: ${(e as Error).message}`);
      return null;
    }
    if (got.opcode !== OP.CLOSE) {
      this.t.fail(`expected a close frame with ${codes.join(' or ')}, got ${show(got.opcode, got.payload)}`);
      return null;
    }
    const actual = closeCodeOf({ payload: got.payload } as Frame);
    this.t.ok(codes.includes(actual), `close code ${actual} (expected ${codes.join(' or ')})`, { found: actual, wanted: codes });
    await this.expectTcpClose();
    return got.payload;
  }

  /** After the closing handshake (or a failure) the server drops TCP, with nothing more sent. */
  async expectTcpClose(ms = 3000): Promise<void> {
    const closed = await this.peer.waitClosed(ms);
    this.t.ok(closed, 'server closed the TCP connection');
    const extra = this.peer.drain();
    this.t.same(extra.map(describe), [], 'nothing after the close frame');
  }

  /** The suite's normal ending: close 1000, the server echoes 1000 and closes TCP. */
  async closeNormally(): Promise<void> {
    this.write(closeFrame(1000));
    await this.expectClose(1000);
  }

  /** True when the server sends nothing (and keeps the connection) for `ms`. */
  async quiet(ms: number): Promise<boolean> {
    return this.peer.quietFor(ms);
  }

  /** Pause helper for frame-wise sending with delays. */
  delay(ms: number): Promise<void> {
    return delay(ms);
  }
}
