/**
 * permessage-deflate (RFC 7692) from the suite's side: parse and check the server's answer to an offer, compress
 * what we send (raw deflate, sync flush, trailer removed) and inflate what comes back, each with or without
 * context takeover as negotiated.
 */
import { constants, createDeflateRaw, createInflateRaw, type DeflateRaw, type InflateRaw } from 'node:zlib';

const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

export type Params = Map<string, string | true>;

/** Parses a Sec-WebSocket-Extensions value into [name, params][] (no quoted-string support: none is needed). */
export function parseExtensionHeader(value: string): Array<{ name: string; params: Params; duplicate: boolean }> {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((ext) => {
      const [name, ...rest] = ext.split(';').map((s) => s.trim());
      const params: Params = new Map();
      let duplicate = false;
      for (const p of rest) {
        const eq = p.indexOf('=');
        const key = (eq < 0 ? p : p.slice(0, eq)).trim();
        if (params.has(key)) duplicate = true;
        params.set(key, eq < 0 ? true : p.slice(eq + 1).trim());
      }
      return { name, params, duplicate };
    });
}

/** What both sides agreed to, from the client's point of view. */
export interface Agreed {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number;
  clientMaxWindowBits: number;
}

const bitsOk = (v: string | true | undefined): boolean => typeof v === 'string' && /^(8|9|1[0-5])$/.test(v);

/**
 * Checks the server's response to ONE offer (RFC 7692 §7.1) and returns the agreed parameters, or a list of
 * problems. `offer` is the offer's parameter map.
 */
export function checkResponse(offer: Params, responseHeader: string | undefined): Agreed | string[] {
  const problems: string[] = [];
  if (responseHeader === undefined) return ['no Sec-WebSocket-Extensions in the 101 (offer declined)'];
  const exts = parseExtensionHeader(responseHeader);
  if (exts.length !== 1 || exts[0].name !== 'permessage-deflate') return [`expected exactly permessage-deflate, got "${responseHeader}"`];
  const { params, duplicate } = exts[0];
  if (duplicate) problems.push('a parameter is repeated');
  for (const [k, v] of params) {
    if (k === 'server_no_context_takeover' || k === 'client_no_context_takeover') {
      if (v !== true) problems.push(`${k} must not have a value`);
    } else if (k === 'server_max_window_bits' || k === 'client_max_window_bits') {
      if (!bitsOk(v)) problems.push(`${k} needs a value 8–15, got ${String(v)}`);
    } else problems.push(`unknown parameter ${k}`);
  }
  // §7.1.1.1: server_no_context_takeover offered → the server must include it when it accepts.
  if (offer.has('server_no_context_takeover') && !params.has('server_no_context_takeover')) problems.push('offered server_no_context_takeover is missing');
  // §7.1.2.1: a server_max_window_bits offered → accepted with the same or a smaller value.
  const offeredServer = offer.get('server_max_window_bits');
  const gotServer = params.get('server_max_window_bits');
  if (typeof offeredServer === 'string') {
    if (gotServer === undefined) problems.push('offered server_max_window_bits is missing');
    else if (Number(gotServer) > Number(offeredServer)) problems.push(`server_max_window_bits ${String(gotServer)} above the offered ${offeredServer}`);
  }
  // §7.1.2.2: client_max_window_bits only when offered, and no larger than an offered value.
  const offeredClient = offer.get('client_max_window_bits');
  const gotClient = params.get('client_max_window_bits');
  if (gotClient !== undefined) {
    if (offeredClient === undefined) problems.push('client_max_window_bits in the response without an offer of it');
    else if (typeof offeredClient === 'string' && Number(gotClient) > Number(offeredClient)) problems.push(`client_max_window_bits ${String(gotClient)} above the offered ${offeredClient}`);
  }
  if (problems.length > 0) return problems;
  return {
    serverNoContextTakeover: params.has('server_no_context_takeover'),
    clientNoContextTakeover: params.has('client_no_context_takeover') || offer.has('client_no_context_takeover'),
    serverMaxWindowBits: typeof gotServer === 'string' ? Number(gotServer) : 15,
    clientMaxWindowBits: Math.min(
      typeof gotClient === 'string' ? Number(gotClient) : 15,
      typeof offeredClient === 'string' ? Number(offeredClient) : 15,
    ),
  };
}

type Z = (DeflateRaw | InflateRaw) & { out: Buffer[] };

function wrap<T extends DeflateRaw | InflateRaw>(z: T): T & Z {
  const s = z as T & Z;
  s.out = [];
  s.on('data', (c: Buffer) => s.out.push(c));
  return s;
}

/** Runs `input` through `z` and sync-flushes; resolves with the output of this call only. */
function pump(z: Z, input: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    z.once('error', onError);
    for (const b of input) z.write(b);
    z.flush(constants.Z_SYNC_FLUSH, () => {
      z.off('error', onError);
      const out = Buffer.concat(z.out);
      z.out = [];
      resolve(out);
    });
  });
}

/** Our compressor: one context for the connection, or a fresh one per message (no context takeover). */
export class Compressor {
  private z: (DeflateRaw & Z) | null = null;
  constructor(
    private readonly windowBits: number,
    private readonly reset: boolean,
  ) {}

  async compress(data: Buffer): Promise<Buffer> {
    const z = (this.z ??= wrap(createDeflateRaw({ windowBits: this.windowBits, level: 6 })));
    let out = await pump(z, [data]);
    if (out.length >= 4 && out.subarray(out.length - 4).equals(TRAILER)) out = out.subarray(0, out.length - 4);
    if (this.reset) this.close();
    return out.length === 0 ? Buffer.from([0]) : out;
  }

  close(): void {
    this.z?.close();
    this.z = null;
  }
}

/** Our decompressor: one context for the connection, or a fresh one per message when the server resets its own. */
export class Decompressor {
  private z: (InflateRaw & Z) | null = null;
  constructor(
    private readonly windowBits: number,
    private readonly reset: boolean,
  ) {}

  async decompress(data: Buffer): Promise<Buffer> {
    const z = (this.z ??= wrap(createInflateRaw({ windowBits: this.windowBits })));
    try {
      return await pump(z, [data, TRAILER]);
    } catch (e) {
      this.close();
      throw e;
    } finally {
      if (this.reset) this.close();
    }
  }

  close(): void {
    this.z?.close();
    this.z = null;
  }
}
