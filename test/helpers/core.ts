/** Test helpers for the core: raw frame builder (valid or not) and a recording handler. */
import { Protocol, type ProtocolHandler, type ProtocolOptions, type ProtocolError } from '../../lib/core/index.js';

export interface RawFrame {
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  opcode: number;
  payload?: Uint8Array | string;
  /** 4-byte key, or null/undefined for an unmasked frame. */
  mask?: number[] | null;
  /** Force the length encoding: 7, 16 or 64 bits (non-minimal allowed). */
  lengthBits?: 7 | 16 | 64;
  /** Override the declared length (a lie; the payload bytes stay as given). */
  declaredLength?: number | bigint;
}

/** Builds one frame's bytes exactly as described, including frames that break the protocol. */
export function rawFrame(f: RawFrame): Buffer {
  const payload = typeof f.payload === 'string' ? Buffer.from(f.payload) : Buffer.from(f.payload ?? []);
  const len = f.declaredLength ?? payload.length;
  const bits = f.lengthBits ?? (Number(len) < 126 ? 7 : Number(len) < 65536 ? 16 : 64);
  const head: number[] = [
    (f.fin === false ? 0 : 0x80) | (f.rsv1 ? 0x40 : 0) | (f.rsv2 ? 0x20 : 0) | (f.rsv3 ? 0x10 : 0) | f.opcode,
  ];
  const m = f.mask ? 0x80 : 0;
  if (bits === 7) head.push(m | Number(len));
  else if (bits === 16) head.push(m | 126, (Number(len) >> 8) & 0xff, Number(len) & 0xff);
  else {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(m | 127, ...b);
  }
  let body = payload;
  if (f.mask) {
    head.push(...f.mask);
    body = Buffer.from(payload.map((x, i) => x ^ f.mask![i & 3]));
  }
  return Buffer.concat([Buffer.from(head), body]);
}

export const MASK = [0x37, 0xfa, 0x21, 0x3d];

/** A frame as the given role's peer would send it: masked toward a server, unmasked toward a client. */
export function peerFrame(role: 'server' | 'client', f: Omit<RawFrame, 'mask'>): Buffer {
  return rawFrame({ ...f, mask: role === 'server' ? MASK : null });
}

export type Event =
  | ['message', string, boolean, boolean]
  | ['ping', string]
  | ['pong', string]
  | ['close', number, string]
  | ['error', string, number]
  | ['write', string]
  | ['end'];

/** A protocol whose handler records every event (messages as hex for binary, text as text). */
export function recorder(options: ProtocolOptions): { protocol: Protocol; events: Event[]; written: Buffer[]; messages: Buffer[] } {
  const events: Event[] = [];
  const written: Buffer[] = [];
  const messages: Buffer[] = [];
  const handler: ProtocolHandler = {
    onMessage(data, isBinary, compressed) {
      messages.push(Buffer.from(data));
      events.push(['message', isBinary ? data.toString('hex') : data.toString('utf8'), isBinary, compressed]);
    },
    onPing(data) {
      events.push(['ping', data.toString('hex')]);
    },
    onPong(data) {
      events.push(['pong', data.toString('hex')]);
    },
    onClose(code, reason) {
      events.push(['close', code, reason]);
    },
    onError(error: ProtocolError) {
      events.push(['error', error.code, error.closeCode]);
    },
    onWrite(data) {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      written.push(buf);
      events.push(['write', buf.toString('hex')]);
    },
    onEnd() {
      events.push(['end']);
    },
  };
  return { protocol: new Protocol(options, handler), events, written, messages };
}

/** Feeds `input` split at the given cut points (each chunk a fresh copy) and returns the events. */
export function feedSplit(options: ProtocolOptions, input: Buffer, cuts: number[]): Event[] {
  const r = recorder(options);
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    if (cut > at) r.protocol.receive(Buffer.from(input.subarray(at, cut)));
    at = Math.max(at, cut);
  }
  return r.events;
}

/** Fixed mask source for exact bytes: always 37 fa 21 3d (the RFC 6455 §5.7 key). */
export const fixedMask = (target: Uint8Array, offset: number): void => {
  target.set(MASK, offset);
};

/** The close frame a side sends with `code` (and reason), as hex, for a role (`client` masks with MASK). */
export function closeHex(role: 'server' | 'client', code?: number, reason = ''): string {
  const payload = code === undefined ? Buffer.alloc(0) : Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]);
  return rawFrame({ opcode: 8, payload, mask: role === 'client' ? MASK : null }).toString('hex');
}
