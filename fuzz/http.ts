/**
 * Fuzzing the opening-handshake parsers: the incremental HTTP/1.1 head parser (lib/core/http1.ts), the
 * `Sec-WebSocket-Protocol` / `Sec-WebSocket-Extensions` tokenizers (lib/core/tokens.ts), the upgrade checks
 * (lib/core/handshake.ts) and permessage-deflate negotiation (lib/deflate/negotiate.ts).
 *
 * - {@link httpCase} generates request and response heads: valid upgrade requests and 101 responses, then
 *   mutated line by line (odd characters in names and values, duplicates, CR/LF/NUL, obs-fold, huge values, many
 *   headers, `__proto__`/`constructor` names, hostile protocol and extension values, broken start lines and line
 *   ends) and byte by byte, or random bytes; with random limits, often right at the head's size.
 * - {@link checkHead} feeds one input to a {@link HeadParser} in several chunkings and returns every violated
 *   invariant (an empty list means all is well):
 *   1. `[http no-throw]` the parser throws nothing but a `HeadError` with status 400 or 431; `parseHead`,
 *      `checkUpgradeRequest`, `checkUpgradeResponse`, the tokenizers and the negotiation never throw otherwise.
 *   2. `[http chunking]` every chunking (whole, 1-byte, random, with empty chunks, in exact-size or pooled
 *      memory) gives the same outcome: the same head and the same bytes after it, the same refusal (status and
 *      message), or still incomplete. Calling `parseHead` on the head's bytes gives the same head.
 *   3. `[http limits]` no head over `maxHeadSize` bytes and no more than `maxHeaders` header lines are accepted,
 *      and the memory the parser retains while gathering a head stays within the bound the core fuzzer uses
 *      (4 × `maxHeadSize` plus two 16 KiB blocks, counting each held Buffer's backing store once plus
 *      {@link PART_COST} per held Buffer object).
 *   4. `[http prototype]` `Object.prototype` and `Array.prototype` are never changed.
 *   5. `[http head]` an accepted head has the shape http1.ts documents: lower-case token names, values with no
 *      control character but HTAB and no surrounding whitespace, a token method, an `HTTP/1.` version, a
 *      3-digit status, and the parser's `rest` is exactly the input after the head.
 *   6. `[http tokens]` ({@link checkTokens}, on the head's protocol and extension values and on generated
 *      hostile values) the tokenizers never throw, their output is no larger than their input and within
 *      the offer/parameter caps, and parse → format → parse is stable for accepted extension values.
 *   7. `[http handshake]` the upgrade checks and `negotiateServer`/`acceptServerResponse` never throw on any
 *      parsed head or offers, and what they accept is consistent (a valid key, offered protocols, window bits
 *      in range, a negotiated header that parses back to one permessage-deflate offer).
 * - {@link runHttpCampaign} runs generated cases until the time is up, deterministically from a seed.
 *
 * @module
 */
import { acceptKey, checkUpgradeRequest, checkUpgradeResponse, isRefusal, isValidKey } from '../lib/core/handshake.js';
import { HEAD_DEFAULTS, HeadError, type HeadLimits, HeadParser, type HttpHead, isToken, listHeader, parseHead, hasToken } from '../lib/core/http1.js';
import { type ExtensionOffer, formatExtensions, MAX_EXTENSION_OFFERS, MAX_EXTENSION_PARAMS, parseExtensions, parseProtocols } from '../lib/core/tokens.js';
import { acceptServerResponse, type DeflateOptions, negotiateServer, resolveDeflateOptions } from '../lib/deflate/negotiate.js';
import { campaignDeadline, checkSeedOf, createRng, PART_COST, randomCuts, retainedBound, type Rng } from './core.js';

// ───────────────────────────── constants ─────────────────────────────

/** The key whose accept value generated 101 responses carry (RFC 6455 §1.3's sample nonce). */
export const RESPONSE_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
/** Subprotocols the client is taken to have offered when a response is checked. */
export const OFFERED_PROTOCOLS: readonly string[] = ['chat', 'superchat', 'v2.json.example', 'mqtt'];
/** Extensions the client is taken to have offered when a response is checked. */
export const OFFERED_EXTENSIONS: readonly string[] = ['permessage-deflate'];

/** Names that are special on plain objects: a parser keeping headers in one would be polluted or confused. */
export const PROTO_NAMES = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__', '__lookupSetter__', 'isPrototypeOf', 'propertyIsEnumerable'] as const;

/** What a head is: a request (server side) or a response (client side). */
export type HeadKind = 'request' | 'response';

// ───────────────────────────── generators ─────────────────────────────

/** Tokens: ordinary, with every tchar punctuation, and special names. */
const TOKENS = ['chat', 'superchat', 'mqtt', 'v2.json.example', 'x', 'a1', "!#$%&'*+-.^_`|~", 'Soap', 'wamp.2.json', ...PROTO_NAMES] as const;

/** A random 16-byte key, base64: always valid. */
function randomKey(rng: Rng): string {
  return rng.bytes(16).toString('base64');
}

/** A permessage-deflate parameter, valid or not (bad window bits, quoted values, unknown names, duplicates). */
function deflateParam(rng: Rng): string {
  const bits = (): string => rng.pick(['8', '9', '10', '12', '15', '08', '16', '0', '1', 'abc', '"10"', '"15"', '""', '"1\\5"', '99999999999999999999']);
  return rng.weighted([
    [4, () => 'client_max_window_bits'],
    [4, () => `client_max_window_bits=${bits()}`],
    [4, () => `server_max_window_bits=${bits()}`],
    [1, () => 'server_max_window_bits'],
    [3, () => 'server_no_context_takeover'],
    [3, () => 'client_no_context_takeover'],
    [1, () => `client_no_context_takeover=${rng.pick(['1', '"x"'])}`],
    [1, () => `${rng.pick(TOKENS)}${rng.chance(0.5) ? '' : `=${rng.pick(TOKENS)}`}`],
    [1, () => rng.pick(['Client_Max_Window_Bits=10', 'SERVER_NO_CONTEXT_TAKEOVER'])],
  ] as const)();
}

/** Optional whitespace: none, a space, a tab, or a short run of both. */
function ows(rng: Rng): string {
  return rng.weighted([[6, ''], [3, ' '], [1, '\t'], [1, ' \t  ']] as const);
}

/** A syntactically valid `Sec-WebSocket-Extensions` value: 1–4 offers, mostly permessage-deflate, with parameters. */
export function extensionsValue(rng: Rng): string {
  const offers: string[] = [];
  for (let n = rng.range(1, 4); n > 0; n--) {
    let offer = rng.weighted([[6, 'permessage-deflate'], [1, 'x-webkit-deflate-frame'], [1, rng.pick(TOKENS)]] as const);
    for (let p = rng.weighted([[3, 0], [4, rng.range(1, 3)], [1, rng.range(4, 8)]] as const); p > 0; p--) offer += `${ows(rng)};${ows(rng)}${deflateParam(rng)}`;
    offers.push(offer);
  }
  return offers.join(`${ows(rng)},${ows(rng)}`);
}

/** A syntactically valid `Sec-WebSocket-Protocol` value: 1–5 distinct tokens. */
export function protocolsValue(rng: Rng): string {
  const names = new Set<string>();
  for (let n = rng.range(1, 5); n > 0; n--) names.add(rng.pick(TOKENS));
  return [...names].join(rng.pick([', ', ',', ' , ', ',\t']));
}

/** Pieces hostile protocol and extension values are made of. */
const HOSTILE_PIECES = ['"', '\\', ',', ';', '=', ' ', '\t', 'a', 'permessage-deflate', 'client_max_window_bits', '15', '=15', '="15"', '\\"', '"\\', ';;', ',,', '=""', '="a\\b"', 'é', '\x00', '\x7f', '\xff', '\r', '\n', '__proto__', 'constructor', '=__proto__', '( )', '{}', '/'] as const;

/**
 * A hostile `Sec-WebSocket-Protocol` / `-Extensions` value: hostile pieces (quotes, backslashes, commas,
 * semicolons, `=`, whitespace, control and non-ASCII characters), long runs of one piece (up to ~`maxRun`
 * characters), or a valid value with such pieces spliced in.
 */
export function hostileTokenValue(rng: Rng, maxRun = 4000): string {
  const kind = rng.weighted([[4, 'pieces'], [2, 'run'], [3, 'spliced'], [1, 'many-offers']] as const);
  const piece = (): string => (rng.chance(0.7) ? rng.pick(HOSTILE_PIECES) : rng.pick(TOKENS));
  switch (kind) {
    case 'pieces': {
      let out = '';
      for (let n = rng.range(1, 30); n > 0; n--) out += piece();
      return out;
    }
    case 'run': {
      const prefix = rng.chance(0.5) ? rng.pick(['a; b=', 'a; b="', 'a; b="x', 'permessage-deflate; client_max_window_bits=', 'a, ', '']) : '';
      const unit = rng.chance(0.7) ? rng.pick(HOSTILE_PIECES) : `${piece()}${piece()}`;
      return prefix + unit.repeat(Math.max(1, Math.floor(rng.int(maxRun) / unit.length))) + (rng.chance(0.5) ? piece() : '');
    }
    case 'many-offers': {
      const one = rng.chance(0.5) ? 'permessage-deflate' : `a; ${deflateParam(rng)}`;
      const count = rng.pick([MAX_EXTENSION_OFFERS - 1, MAX_EXTENSION_OFFERS, MAX_EXTENSION_OFFERS + 1, rng.int(200)]);
      const params = rng.pick([MAX_EXTENSION_PARAMS - 1, MAX_EXTENSION_PARAMS, MAX_EXTENSION_PARAMS + 1]);
      return rng.chance(0.5) ? Array(count).fill(one).join(', ') : `x${'; p'.repeat(params)}`;
    }
    default: {
      let value = rng.chance(0.5) ? extensionsValue(rng) : protocolsValue(rng);
      for (let n = rng.range(1, 4); n > 0; n--) {
        const at = rng.int(value.length + 1);
        value = rng.chance(0.3) ? value.slice(0, at) + value.slice(at + rng.range(1, 4)) : value.slice(0, at) + piece() + value.slice(at);
      }
      return value;
    }
  }
}

/** A header field before serialization: name and value, joined as `name: value` unless the line is raw. */
interface Field {
  name: string;
  value: string;
  /** A raw line (obs-fold, no colon, …) written as is. */
  raw?: string;
}

/** The name with random letter case (names are case-insensitive). */
function randomCase(rng: Rng, name: string): string {
  const how = rng.int(4);
  if (how === 0) return name;
  if (how === 1) return name.toLowerCase();
  if (how === 2) return name.toUpperCase();
  let out = '';
  for (const c of name) out += rng.chance(0.5) ? c.toUpperCase() : c.toLowerCase();
  return out;
}

/** Shuffles in place (Fisher–Yates). */
function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** Ordinary headers browsers and clients add. */
function extraFields(rng: Rng): Field[] {
  const pool: Field[] = [
    { name: 'User-Agent', value: 'Mozilla/5.0 (X11; Linux x86_64) fuzz/1.0' },
    { name: 'Accept-Encoding', value: 'gzip, deflate, br' },
    { name: 'Accept-Language', value: 'en-US,en;q=0.9' },
    { name: 'Cookie', value: `session=${rng.bytes(12).toString('hex')}; theme=dark` },
    { name: 'Cache-Control', value: 'no-cache' },
    { name: 'Pragma', value: 'no-cache' },
    { name: 'Authorization', value: `Bearer ${rng.bytes(24).toString('base64')}` },
    { name: 'X-Forwarded-For', value: '203.0.113.7, 198.51.100.2' },
    { name: 'X-Empty', value: '' },
    { name: 'X-Latin1', value: 'caf\xe9 \xa0\xff' },
  ];
  return shuffle(rng, pool).slice(0, rng.int(5));
}

/** The start line and fields of a valid upgrade request. */
function upgradeRequestModel(rng: Rng): { start: string; fields: Field[] } {
  const target = rng.pick(['/', '/chat', '/chat?room=1&x=%20y', '/a/b/c?q=%E2%9C%93#frag', '*', 'http://example.com/ws', `/${rng.bytes(6).toString('hex')}`]);
  const fields: Field[] = [
    { name: 'Host', value: rng.pick(['example.com', 'server.example.com:8080', '127.0.0.1:9001', '[::1]:443']) },
    { name: 'Upgrade', value: rng.pick(['websocket', 'WebSocket', 'websocket, h2c', 'h2c, websocket']) },
    { name: 'Connection', value: rng.pick(['Upgrade', 'upgrade', 'keep-alive, Upgrade', 'Upgrade, HTTP2-Settings']) },
    { name: 'Sec-WebSocket-Key', value: randomKey(rng) },
    { name: 'Sec-WebSocket-Version', value: '13' },
  ];
  if (rng.chance(0.5)) fields.push({ name: rng.chance(0.9) ? 'Origin' : 'Sec-WebSocket-Origin', value: rng.pick(['https://app.example', 'http://localhost:3000', 'null']) });
  if (rng.chance(0.5)) fields.push({ name: 'Sec-WebSocket-Protocol', value: protocolsValue(rng) });
  if (rng.chance(0.6)) fields.push({ name: 'Sec-WebSocket-Extensions', value: extensionsValue(rng) });
  fields.push(...extraFields(rng));
  return { start: `GET ${target} HTTP/1.1`, fields: shuffle(rng, fields) };
}

/** The start line and fields of a response: mostly a valid 101 for {@link RESPONSE_KEY}, sometimes a refusal or redirect. */
function responseModel(rng: Rng): { start: string; fields: Field[] } {
  const status = rng.weighted([[8, 101], [1, 200], [1, 301], [1, 400], [1, 426], [1, 503]] as const);
  const fields: Field[] = [];
  if (status === 101) {
    fields.push(
      { name: 'Upgrade', value: rng.pick(['websocket', 'WebSocket']) },
      { name: 'Connection', value: rng.pick(['Upgrade', 'upgrade']) },
      { name: 'Sec-WebSocket-Accept', value: rng.chance(0.95) ? acceptKey(RESPONSE_KEY) : acceptKey(randomKey(rng)) },
    );
    if (rng.chance(0.5)) fields.push({ name: 'Sec-WebSocket-Protocol', value: rng.chance(0.85) ? rng.pick(OFFERED_PROTOCOLS) : rng.pick(TOKENS) });
    if (rng.chance(0.6)) {
      // What a server would answer to a random offer, or a random (possibly unacceptable) value.
      const offers = parseExtensions(extensionsValue(rng)) ?? [];
      const negotiated = negotiateServer(offers, resolveDeflateOptions(true));
      fields.push({ name: 'Sec-WebSocket-Extensions', value: negotiated && rng.chance(0.7) ? negotiated.header : extensionsValue(rng) });
    }
  } else {
    if (status === 301) fields.push({ name: 'Location', value: rng.pick(['ws://example.com/other', '/relative', '']) });
    if (status === 426) fields.push({ name: 'Sec-WebSocket-Version', value: '13' });
    fields.push({ name: 'Content-Length', value: '0' }, { name: 'Connection', value: 'close' });
  }
  if (rng.chance(0.3)) fields.push({ name: 'Server', value: 'fuzz/1.0' }, { name: 'Date', value: 'Mon, 01 Jan 2024 00:00:00 GMT' });
  const reason = rng.pick(['Switching Protocols', 'OK', '', 'Whatever \t reason', 'caf\xe9']);
  return { start: `HTTP/1.1 ${status} ${reason}`, fields: shuffle(rng, fields) };
}

/** Odd header names: separators, whitespace, controls, non-ASCII, empty, special object keys. */
const ODD_NAMES = ['Host ', ' Host', 'Ho st', 'Host\t', 'Ho\x00st', 'Hö', 'H\xffost', '', '(x)', 'a"b', 'a:b', 'a/b', 'a=b', '\x7f', 'X-\r', 'X-\n', ...PROTO_NAMES] as const;
/** Characters that must not appear in header values, and some that may (obs-text, HTAB). */
const ODD_VALUE_CHARS = ['\x00', '\r', '\n', '\r\n', '\x7f', '\x0b', '\x0c', '\x1b', '\x80', '\xff', '\t', ' ', '"', '\\', ',', ';', ':'] as const;
/** Broken or unusual start lines. */
const ODD_REQUEST_LINES = ['get / HTTP/1.1', 'GET  / HTTP/1.1', 'GET / HTTP/1.1 ', ' GET / HTTP/1.1', 'GET /', 'GET / HTTP/1.0', 'GET / HTTP/2', 'GET / HTTP/1.1x', 'GET / http/1.1', 'GET\t/\tHTTP/1.1', 'G(T / HTTP/1.1', 'POST /chat HTTP/1.1', 'GET  HTTP/1.1', '', 'GET /a b HTTP/1.1', 'GET / HTTP/1.'] as const;
const ODD_STATUS_LINES = ['HTTP/1.1 101', 'HTTP/1.1 101 ', 'HTTP/1.1  101 Switching', 'HTTP/1.1 1011 Switching', 'HTTP/1.1 099 Low', 'HTTP/1.1 10a X', 'HTTP/1.1 -11 X', 'HTTP/1.0 101 Switching Protocols', 'HTTP/2 101 X', 'http/1.1 101 x', 'HTTP/1.1 999 Max', 'HTTP/1.1 100 Continue', '101 Switching Protocols', ''] as const;

/** Applies one line-level mutation to a head model. */
function mutateModel(rng: Rng, kind: HeadKind, model: { start: string; fields: Field[] }, maxHeaders: number): void {
  const { fields } = model;
  const any = (): Field | undefined => (fields.length > 0 ? fields[rng.int(fields.length)] : undefined);
  const op = rng.weighted([
    [3, 'duplicate'],
    [2, 'drop'],
    [3, 'oddName'],
    [4, 'oddValue'],
    [2, 'fold'],
    [2, 'huge'],
    [2, 'many'],
    [3, 'proto'],
    [3, 'start'],
    [4, 'hostile'],
    [1, 'noColon'],
    [1, 'emptyLine'],
  ] as const);
  switch (op) {
    case 'duplicate': {
      const f = any();
      if (f) fields.splice(rng.int(fields.length + 1), 0, { ...f, name: randomCase(rng, f.name), value: rng.chance(0.5) ? f.value : `${f.value}x` });
      break;
    }
    case 'drop':
      if (fields.length > 0) fields.splice(rng.int(fields.length), 1);
      break;
    case 'oddName': {
      const f = any();
      if (f) f.name = rng.chance(0.3) ? f.name + rng.pick(ODD_NAMES) : rng.pick(ODD_NAMES);
      break;
    }
    case 'oddValue': {
      const f = any();
      if (f) {
        const at = rng.int(f.value.length + 1);
        f.value = f.value.slice(0, at) + rng.pick(ODD_VALUE_CHARS) + f.value.slice(at);
      }
      break;
    }
    case 'fold':
      fields.splice(rng.int(fields.length + 1), 0, { name: '', value: '', raw: `${rng.pick([' ', '\t', '  '])}${rng.pick(['continued', 'websocket', ''])}` });
      break;
    case 'huge': {
      const size = rng.weighted([[4, rng.int(4000)], [2, HEAD_DEFAULTS.maxHeadSize + rng.range(-64, 64)], [1, rng.int(70_000)]] as const);
      const unit = rng.pick(['a', ' ', ',', 'permessage-deflate; ', '\t', 'x, ']);
      fields.push({ name: rng.pick(['X-Huge', 'Cookie', 'Sec-WebSocket-Extensions', 'Sec-WebSocket-Protocol', 'Connection']), value: unit.repeat(Math.ceil(size / unit.length)).slice(0, size) });
      break;
    }
    case 'many': {
      const n = rng.chance(0.6) ? Math.max(0, maxHeaders - fields.length + rng.range(-2, 2)) : rng.int(300);
      const name = rng.chance(0.5) ? 'X-Many' : undefined;
      for (let i = 0; i < n; i++) fields.push({ name: name ?? `X-H${i}`, value: rng.chance(0.8) ? String(i) : '' });
      break;
    }
    case 'proto':
      fields.splice(rng.int(fields.length + 1), 0, { name: randomCase(rng, rng.pick(PROTO_NAMES)), value: rng.pick(['x', '', '{"polluted":true}', 'polluted', '1']) });
      break;
    case 'start':
      model.start = rng.chance(0.7) ? rng.pick(kind === 'request' ? ODD_REQUEST_LINES : ODD_STATUS_LINES) : model.start + rng.pick(ODD_VALUE_CHARS);
      break;
    case 'hostile': {
      const name = rng.pick(['Sec-WebSocket-Protocol', 'Sec-WebSocket-Extensions', 'Connection', 'Upgrade', 'Sec-WebSocket-Key', 'Sec-WebSocket-Version']);
      const existing = fields.find((f) => f.name.toLowerCase() === name.toLowerCase());
      const value = hostileTokenValue(rng, rng.chance(0.8) ? 400 : 4000);
      if (existing && rng.chance(0.6)) existing.value = value;
      else fields.push({ name, value });
      break;
    }
    case 'noColon':
      fields.splice(rng.int(fields.length + 1), 0, { name: '', value: '', raw: rng.pick(['NoColonHere', 'Host example.com', ':', ': value', '\x00']) });
      break;
    default:
      // A blank line in the middle ends the head early: the rest is "body".
      fields.splice(rng.int(fields.length + 1), 0, { name: '', value: '', raw: '' });
  }
}

/** Bytes that matter in a head: line ends, whitespace, separators, controls, extremes. */
const INTERESTING_HTTP_BYTES = [0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x2c, 0x3b, 0x22, 0x5c, 0x3d, 0x00, 0x7f, 0x80, 0xff, 0x0b] as const;

/** Byte-level mutation: flips, replacements and insertions of interesting bytes, deletions, duplicated runs. */
export function mutateHeadBytes(rng: Rng, input: Uint8Array): Buffer {
  let b = Buffer.from(input);
  for (let ops = rng.range(1, 4); ops > 0; ops--) {
    const at = rng.int(b.length + 1);
    switch (rng.int(5)) {
      case 0:
        if (b.length > 0) b[Math.min(at, b.length - 1)] ^= 1 << rng.int(8);
        break;
      case 1:
        if (b.length > 0) b[Math.min(at, b.length - 1)] = rng.pick(INTERESTING_HTTP_BYTES);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), Buffer.from(rng.chance(0.5) ? [rng.pick(INTERESTING_HTTP_BYTES)] : [0x0d, 0x0a]), b.subarray(at)]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.range(1, 6)))]);
        break;
      default: {
        const end = Math.min(b.length, at + rng.range(1, 40));
        b = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
      }
    }
  }
  return b;
}

/** Serializes a model: start line and fields with the chosen line end, then the blank line (or not). */
function serialize(rng: Rng, model: { start: string; fields: Field[] }): Buffer {
  // Mostly CRLF; sometimes one line (or all) ends in a bare LF or CR.
  const eolKind = rng.weighted([[12, 'crlf'], [1, 'lf'], [1, 'cr'], [2, 'one']] as const);
  const lines = [model.start, ...model.fields.map((f) => f.raw ?? `${randomCase(rng, f.name)}:${rng.chance(0.8) ? ' ' : ows(rng)}${f.value}${rng.chance(0.1) ? ows(rng) : ''}`)];
  const odd = rng.int(lines.length);
  const eol = (i: number): string => (eolKind === 'crlf' || (eolKind === 'one' && i !== odd) ? '\r\n' : eolKind === 'lf' || rng.chance(0.5) ? '\n' : '\r');
  let text = '';
  for (let i = 0; i < lines.length; i++) text += lines[i] + eol(i);
  const end = rng.weighted([[20, '\r\n'], [1, ''], [1, '\n'], [1, '\r'], [1, '\r\n\r\n']] as const);
  return Buffer.from(text + end, 'latin1');
}

/** One generated input for {@link checkHead}. */
export interface HeadCase {
  kind: HeadKind;
  limits: HeadLimits;
  bytes: Buffer;
  /** How the bytes were made: `valid`, `mutated`, `bytes` (byte-mutated too) or `random`. */
  origin: string;
}

/** Random limits: mostly the defaults, else small, large or right at (±2 of) the input's head size / header count. */
export function randomLimits(rng: Rng, bytes: Buffer): HeadLimits {
  const limits: HeadLimits = {};
  const end = bytes.indexOf('\r\n\r\n');
  const headSize = end === -1 ? bytes.length : end + 4;
  if (rng.chance(0.3)) limits.maxHeadSize = rng.weighted([[4, Math.max(0, headSize + rng.range(-2, 2))], [2, rng.pick([0, 1, 4, 16, 64, 200, 1024])], [2, rng.pick([65536, 131072, 1 << 20])], [1, rng.int(headSize + 1)]] as const);
  if (rng.chance(0.25)) {
    let lines = 0;
    for (let i = 0; i < headSize - 1; i++) if (bytes[i] === 0x0d && bytes[i + 1] === 0x0a) lines++;
    limits.maxHeaders = rng.chance(0.6) ? Math.max(0, lines - 2 + rng.range(-2, 2)) : rng.pick([0, 1, 5, 99, 100, 101, 1000]);
  }
  return limits;
}

/**
 * A random case: a request (60%) or a response; valid (20%), mutated line by line (75%, then byte by byte in
 * over a quarter of them), or random bytes (5%); sometimes followed by bytes after the head (early frames); random
 * limits from {@link randomLimits}.
 */
export function httpCase(rng: Rng): HeadCase {
  const kind: HeadKind = rng.chance(0.6) ? 'request' : 'response';
  const model = kind === 'request' ? upgradeRequestModel(rng) : responseModel(rng);
  const origin = rng.weighted([[20, 'valid'], [55, 'mutated'], [20, 'bytes'], [5, 'random']] as const);
  let bytes: Buffer;
  if (origin === 'random') {
    bytes = rng.bytes(rng.int(rng.chance(0.8) ? 300 : 20_000));
    if (rng.chance(0.5)) bytes = Buffer.concat([bytes, Buffer.from('\r\n\r\n')]);
  } else {
    if (origin !== 'valid') for (let n = rng.weighted([[6, 1], [3, 2], [1, rng.range(3, 6)]] as const); n > 0; n--) mutateModel(rng, kind, model, HEAD_DEFAULTS.maxHeaders);
    bytes = origin === 'valid' ? Buffer.from(`${[model.start, ...model.fields.map((f) => `${f.name}: ${f.value}`)].join('\r\n')}\r\n\r\n`, 'latin1') : serialize(rng, model);
    if (origin === 'bytes') bytes = mutateHeadBytes(rng, bytes);
  }
  if (rng.chance(0.2)) bytes = Buffer.concat([bytes, rng.chance(0.5) ? Buffer.from([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]) : rng.bytes(rng.range(1, 64))]);
  if (rng.chance(0.05)) bytes = bytes.subarray(0, rng.int(bytes.length + 1)); // truncated: incomplete
  return { kind, limits: randomLimits(rng, bytes), bytes, origin };
}

// ───────────────────────────── checking ─────────────────────────────

/** Snapshot of the own keys of the prototypes a parser could pollute. */
function prototypeSnapshot(): string {
  const keys = (o: object): string => Reflect.ownKeys(o).map(String).sort().join(',');
  return `${keys(Object.prototype)}|${keys(Array.prototype)}`;
}

const PRISTINE_PROTOTYPES = prototypeSnapshot();

/** An error, shortened for a report: its type, status (for a HeadError) and message, and where it was thrown. */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return `non-Error ${typeof error}: ${String(error).slice(0, 100)}`;
  const status = (error as { status?: unknown }).status;
  const frame = (error.stack ?? '').split('\n').slice(1, 3).map((s) => s.trim()).join(' | ');
  return `${error.constructor.name}${status === undefined ? '' : ` ${String(status)}`}: ${error.message.slice(0, 160)}${frame ? ` (${frame})` : ''}`;
}

/** Whether an exception is one the head parser may throw: a HeadError with status 400 or 431. */
function isAllowedHeadError(error: unknown): error is HeadError {
  return error instanceof HeadError && (error.status === 400 || error.status === 431);
}

/** Where chunk bytes live: `exact` (own ArrayBuffer of its size, as sockets deliver) or `pooled` (Buffer.from slabs). */
type HeadAllocation = 'exact' | 'pooled';

/** How one run cuts the input. */
interface HeadChunking {
  name: string;
  /** Non-decreasing cut points inside the input; a repeated point is an empty chunk. */
  cuts: number[];
  allocation: HeadAllocation;
}

/** The outcome of feeding an input to a fresh parser. */
type HeadOutcome =
  | { type: 'head'; head: HttpHead; length: number; rest: Buffer }
  | { type: 'refused'; status: number; message: string }
  | { type: 'incomplete' }
  | { type: 'threw'; error: string };

/** A head as JSON: headers as an entry list (a Map does not serialize). */
function headJson(head: HttpHead): string {
  return JSON.stringify([head.method, head.target, head.version, head.status, head.statusText, [...head.headers]]);
}

/** The outcome as a comparable string. */
function outcomeSignature(o: HeadOutcome): string {
  switch (o.type) {
    case 'head':
      return `head ${o.length} bytes ${headJson(o.head)} rest ${o.rest.toString('hex')}`;
    case 'refused':
      return `refused ${o.status} ${JSON.stringify(o.message)}`;
    case 'incomplete':
      return 'incomplete';
    default:
      return `threw ${o.error}`;
  }
}

/** Private state of {@link HeadParser} read to estimate retained memory (any Buffer or Buffer[] field but `rest`). */
type ParserFields = Record<string, unknown>;

/**
 * Incremental estimate of the memory a head parser retains for the head it is gathering: the backing store of
 * every Buffer it holds (in any field but `rest`, each store counted once) plus {@link PART_COST} per held Buffer.
 * Arrays are followed incrementally (appended items only), so 1-byte chunkings stay linear.
 */
class HeadMeter {
  private readonly arrays = new Map<string, { array: unknown[]; counted: number; pieces: number; stores: Set<ArrayBufferLike>; backing: number }>();

  measure(parser: HeadParserLike): { total: number; backing: number; pieces: number } {
    const fields = parser as unknown as ParserFields;
    let backing = 0;
    let pieces = 0;
    const single = new Set<ArrayBufferLike>();
    for (const key of Object.keys(fields)) {
      if (key === 'rest') continue;
      const value = fields[key];
      if (value instanceof Uint8Array) {
        if (!single.has(value.buffer)) {
          single.add(value.buffer);
          backing += value.buffer.byteLength;
        }
        pieces++;
      } else if (Array.isArray(value)) {
        let state = this.arrays.get(key);
        if (state === undefined || state.array !== value || value.length < state.counted) {
          state = { array: value, counted: 0, pieces: 0, stores: new Set(), backing: 0 };
          this.arrays.set(key, state);
        }
        for (; state.counted < value.length; state.counted++) {
          const item = value[state.counted];
          if (!(item instanceof Uint8Array)) continue;
          state.pieces++;
          if (!state.stores.has(item.buffer)) {
            state.stores.add(item.buffer);
            state.backing += item.buffer.byteLength;
          }
        }
        backing += state.backing;
        pieces += state.pieces;
      }
    }
    return { total: backing + PART_COST * pieces, backing, pieces };
  }
}

/** Copies `input[start, end)` into a fresh chunk in the given kind of memory. */
function headChunk(input: Uint8Array, start: number, end: number, allocation: HeadAllocation): Buffer {
  if (allocation === 'pooled') return Buffer.from(input.subarray(start, end));
  const chunk = Buffer.alloc(end - start); // never from the pool: its ArrayBuffer is exactly this size
  chunk.set(input.subarray(start, end));
  return chunk;
}

/** Feeds `input` to a fresh parser in one chunking; checks invariants 1 and 3 on the way. */
function feedHead(kind: HeadKind, limits: HeadLimits, input: Uint8Array, chunking: HeadChunking, violations: string[], factory: HeadParserFactory): HeadOutcome {
  const where = `[${chunking.name}]`;
  const maxHeadSize = limits.maxHeadSize ?? HEAD_DEFAULTS.maxHeadSize;
  const parser = factory(kind, limits);
  const meter = new HeadMeter();
  const bound = retainedBound(maxHeadSize);
  let reported = false;
  let at = 0;
  const points = [...chunking.cuts, input.length];
  for (let k = 0; k < points.length; k++) {
    const cut = points[k];
    if (cut < at) continue;
    let head: HttpHead | null;
    try {
      head = parser.push(headChunk(input, at, cut, chunking.allocation));
    } catch (error) {
      if (isAllowedHeadError(error)) return { type: 'refused', status: error.status, message: error.message };
      const text = describeError(error);
      violations.push(`[http no-throw] ${where} HeadParser.push threw on bytes ${at}..${cut}: ${text}`);
      return { type: 'threw', error: text };
    }
    if (head !== null) {
      const rest = Buffer.concat([parser.rest, input.subarray(cut)]);
      return { type: 'head', head, length: input.length - rest.length, rest };
    }
    at = cut;
    if (!reported) {
      const retained = meter.measure(parser);
      if (retained.total > bound) {
        violations.push(
          `[http limits] ${where} the parser retains ~${retained.total} bytes (backing stores ${retained.backing} + ${retained.pieces} held Buffers × ${PART_COST}) ` +
            `gathering ${at} head bytes, over ${bound} = 4 × maxHeadSize ${maxHeadSize} + 2 × 16 KiB`,
        );
        reported = true;
      }
    }
  }
  return { type: 'incomplete' };
}

/** Checks an accepted head against what http1.ts documents (invariant 5) and the limits (invariant 3). */
function checkHeadShape(kind: HeadKind, limits: HeadLimits, input: Uint8Array, o: Extract<HeadOutcome, { type: 'head' }>, violations: string[]): void {
  const { head } = o;
  const maxHeadSize = limits.maxHeadSize ?? HEAD_DEFAULTS.maxHeadSize;
  const maxHeaders = limits.maxHeaders ?? HEAD_DEFAULTS.maxHeaders;
  if (o.length > maxHeadSize) violations.push(`[http limits] a ${o.length}-byte head was accepted with maxHeadSize ${maxHeadSize}`);
  const headBytes = Buffer.from(input.subarray(0, o.length));
  if (o.length < 4 || headBytes.subarray(o.length - 4).toString('latin1') !== '\r\n\r\n' || headBytes.indexOf('\r\n\r\n') !== o.length - 4) {
    violations.push(`[http head] the accepted head (${o.length} bytes) does not end at the first CR LF CR LF of the input`);
  }
  let values = 0;
  let chars = 0;
  const bad = (what: string): void => {
    if (violations.length < 40) violations.push(`[http head] accepted head: ${what}`);
  };
  for (const [name, list] of head.headers) {
    if (!isToken(name) || name !== name.toLowerCase()) bad(`header name ${JSON.stringify(name)} is not a lower-case token`);
    if (!Array.isArray(list) || list.length === 0) bad(`header ${JSON.stringify(name)} has no value list`);
    for (const v of list) {
      values++;
      chars += name.length + v.length;
      for (let i = 0; i < v.length; i++) {
        const c = v.charCodeAt(i);
        if ((c < 32 && c !== 9) || c === 127 || c > 255) {
          bad(`header ${JSON.stringify(name)} value has character ${c}`);
          break;
        }
      }
      if (/^[ \t]|[ \t]$/.test(v)) bad(`header ${JSON.stringify(name)} value ${JSON.stringify(v.slice(0, 40))} keeps surrounding whitespace`);
    }
  }
  if (values > maxHeaders) violations.push(`[http limits] ${values} header lines accepted with maxHeaders ${maxHeaders}`);
  if (chars > o.length) bad(`names and values total ${chars} characters, more than the ${o.length}-byte head`);
  if (!head.version.startsWith('HTTP/1.')) bad(`version ${JSON.stringify(head.version)}`);
  if (kind === 'request') {
    if (!isToken(head.method)) bad(`method ${JSON.stringify(head.method)} is not a token`);
    if (head.target.length === 0 || head.target.includes(' ')) bad(`request target ${JSON.stringify(head.target)}`);
    if (head.status !== 0 || head.statusText !== '') bad(`a request with status ${head.status} ${JSON.stringify(head.statusText)}`);
  } else if (!Number.isInteger(head.status) || head.status < 100 || head.status > 999 || head.method !== '' || head.target !== '') {
    bad(`response with status ${head.status}, method ${JSON.stringify(head.method)}, target ${JSON.stringify(head.target)}`);
  }
  // parseHead on the head's bytes (without the blank line) must agree with the incremental parser.
  try {
    const direct = parseHead(headBytes.subarray(0, o.length - 2), kind, maxHeaders);
    if (headJson(direct) !== headJson(head)) violations.push(`[http chunking] parseHead on the head's bytes gives ${headJson(direct).slice(0, 200)}, HeadParser ${headJson(head).slice(0, 200)}`);
  } catch (error) {
    violations.push(`[http chunking] parseHead threw on the bytes of a head HeadParser accepted: ${describeError(error)}`);
  }
}

/** Whether `n` is an integer window size in [lo, 15]. */
function windowBitsIn(n: number, lo: number): boolean {
  return Number.isInteger(n) && n >= lo && n <= 15;
}

/** Random resolved permessage-deflate options: the defaults, or random window bits and context takeover flags. */
function randomDeflateOptions(rng: Rng): Required<DeflateOptions> {
  if (rng.chance(0.5)) return resolveDeflateOptions(true);
  return resolveDeflateOptions({
    serverMaxWindowBits: rng.range(9, 15),
    clientMaxWindowBits: rng.range(9, 15),
    serverNoContextTakeover: rng.chance(0.3),
    clientNoContextTakeover: rng.chance(0.3),
  });
}

/** Runs `fn`; a throw becomes a violation line. */
function noThrow<T>(violations: string[], label: string, what: string, fn: () => T): T | undefined {
  try {
    return fn();
  } catch (error) {
    violations.push(`${label} ${what} threw: ${describeError(error)}`);
    return undefined;
  }
}

/** Checks negotiation on parsed offers: negotiateServer never throws and what it returns is consistent. */
function checkNegotiation(offers: ExtensionOffer[], rng: Rng, violations: string[], what: string): void {
  const options = randomDeflateOptions(rng);
  const result = noThrow(violations, '[http handshake]', `negotiateServer on ${what}`, () => negotiateServer(offers, options));
  if (result === undefined || result === null) return;
  const { header, params } = result;
  const back = parseExtensions(header);
  if (back === null || back.length !== 1 || back[0].name !== 'permessage-deflate') {
    violations.push(`[http handshake] negotiateServer on ${what} answered ${JSON.stringify(header)}, which is not one permessage-deflate offer`);
    return;
  }
  // The answer must describe what the server agreed to (RFC 7692 §7.1): a window parameter absent means 15 bits.
  const get = (name: string): string | true | undefined => back[0].params.find(([k]) => k === name)?.[1];
  const bits = (name: string): number => {
    const v = get(name);
    return v === undefined ? 15 : v === true ? NaN : Number(v);
  };
  const problems: string[] = [];
  if (params.serverNoContextTakeover !== (get('server_no_context_takeover') === true)) problems.push('server_no_context_takeover');
  if (params.clientNoContextTakeover !== (get('client_no_context_takeover') === true)) problems.push('client_no_context_takeover');
  if (options.serverNoContextTakeover && !params.serverNoContextTakeover) problems.push('server_no_context_takeover not applied from the options');
  if (options.clientNoContextTakeover && !params.clientNoContextTakeover) problems.push('client_no_context_takeover not applied from the options');
  if (!windowBitsIn(params.serverMaxWindowBits, 8) || params.serverMaxWindowBits > options.serverMaxWindowBits || bits('server_max_window_bits') !== params.serverMaxWindowBits) {
    problems.push(`server_max_window_bits (options: ${options.serverMaxWindowBits})`);
  }
  if (!windowBitsIn(params.clientMaxWindowBits, 8) || bits('client_max_window_bits') !== params.clientMaxWindowBits || (get('client_max_window_bits') !== undefined && params.clientMaxWindowBits > options.clientMaxWindowBits)) {
    problems.push(`client_max_window_bits (options: ${options.clientMaxWindowBits})`);
  }
  if (problems.length > 0) violations.push(`[http handshake] negotiateServer on ${what}: answer ${JSON.stringify(header)} and agreement ${JSON.stringify(params)} disagree on ${problems.join(', ')}`);
  noThrow(violations, '[http handshake]', `acceptServerResponse on negotiated ${JSON.stringify(header)}`, () => acceptServerResponse(back[0], resolveDeflateOptions(true)));
}

/** Checks `acceptServerResponse` on one response offer: no throw, and what it accepts is within the client's offer. */
function checkClientAccept(offer: ExtensionOffer, options: Required<DeflateOptions>, violations: string[], what: string): void {
  const params = noThrow(violations, '[http handshake]', `acceptServerResponse on ${what}`, () => acceptServerResponse(offer, options));
  if (params === undefined || typeof params === 'string') return;
  if (
    !windowBitsIn(params.serverMaxWindowBits, 8) ||
    !windowBitsIn(params.clientMaxWindowBits, 8) ||
    params.serverMaxWindowBits > options.serverMaxWindowBits ||
    params.clientMaxWindowBits > options.clientMaxWindowBits ||
    (options.serverNoContextTakeover && !params.serverNoContextTakeover) ||
    (options.clientNoContextTakeover && !params.clientNoContextTakeover)
  ) {
    violations.push(`[http handshake] acceptServerResponse on ${what} accepted ${JSON.stringify(params)} for an offer made with ${JSON.stringify({ ...options, level: undefined, memLevel: undefined, threshold: undefined, concurrency: undefined })}`);
  }
}

/**
 * Checks the tokenizers on one header value (invariant 6): `parseProtocols` and `parseExtensions` never throw,
 * their output is no larger than the input (and within {@link MAX_EXTENSION_OFFERS} /
 * {@link MAX_EXTENSION_PARAMS}), names and values are tokens, and parse → format → parse is stable for an
 * accepted extension value. Parsed offers go through `negotiateServer` and `acceptServerResponse` (invariant 7).
 * Returns the violations (empty: all held).
 */
export function checkTokens(value: string, rng: Rng): string[] {
  const violations: string[] = [];
  const show = JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  const what = `${show} (${value.length} chars)`;
  const before = prototypeSnapshot();

  const protocols = noThrow(violations, '[http no-throw]', `parseProtocols(${what})`, () => parseProtocols(value));
  if (Array.isArray(protocols)) {
    const total = protocols.reduce((n, p) => n + p.length, 0) + protocols.length - 1;
    if (protocols.length === 0 || total > value.length) violations.push(`[http tokens] parseProtocols(${what}) gave ${protocols.length} names, ${total} characters with separators`);
    if (!protocols.every(isToken) || new Set(protocols).size !== protocols.length) violations.push(`[http tokens] parseProtocols(${what}) gave non-token or repeated names ${JSON.stringify(protocols).slice(0, 120)}`);
  } else if (protocols !== null && protocols !== undefined) {
    violations.push(`[http tokens] parseProtocols(${what}) returned ${typeof protocols}`);
  }

  const offers = noThrow(violations, '[http no-throw]', `parseExtensions(${what})`, () => parseExtensions(value));
  if (Array.isArray(offers)) {
    let chars = 0;
    let shapeOk = offers.length <= MAX_EXTENSION_OFFERS;
    for (const o of offers) {
      chars += o.name.length;
      if (!isToken(o.name) || o.params.length > MAX_EXTENSION_PARAMS) shapeOk = false;
      for (const [k, v] of o.params) {
        chars += k.length + (v === true ? 0 : v.length);
        if (!isToken(k) || k !== k.toLowerCase() || (v !== true && !isToken(v))) shapeOk = false;
      }
    }
    if (!shapeOk) violations.push(`[http tokens] parseExtensions(${what}) gave offers outside the grammar or the caps: ${JSON.stringify(offers).slice(0, 200)}`);
    if (chars > value.length) violations.push(`[http tokens] parseExtensions(${what}) output has ${chars} characters, more than its input`);
    const formatted = noThrow(violations, '[http no-throw]', `formatExtensions(parseExtensions(${what}))`, () => formatExtensions(offers));
    if (formatted !== undefined) {
      const again = noThrow(violations, '[http no-throw]', `parseExtensions(formatted ${JSON.stringify(formatted.slice(0, 60))})`, () => parseExtensions(formatted));
      if (again !== undefined && JSON.stringify(again) !== JSON.stringify(offers)) {
        violations.push(`[http tokens] parse → format → parse of ${what} is not stable: ${JSON.stringify(offers).slice(0, 120)} formatted as ${JSON.stringify(formatted.slice(0, 80))} parses to ${JSON.stringify(again).slice(0, 120)}`);
      } else if (again && formatExtensions(again) !== formatted) {
        violations.push(`[http tokens] format → parse → format of ${what} is not stable`);
      }
    }
    checkNegotiation(offers, rng, violations, `the offers of ${what}`);
    for (const o of offers) {
      if (o.name === 'permessage-deflate') {
        checkClientAccept(o, randomDeflateOptions(rng), violations, what);
      }
    }
  } else if (offers !== null && offers !== undefined) {
    violations.push(`[http tokens] parseExtensions(${what}) returned ${typeof offers}`);
  }
  noThrow(violations, '[http no-throw]', `hasToken(${what})`, () => hasToken(value, 'upgrade'));
  if (prototypeSnapshot() !== before) violations.push(`[http prototype] Object.prototype or Array.prototype changed while tokenizing ${what}`);
  return violations;
}

/** Checks the upgrade checks on an accepted head (invariant 7), and the tokenizers on its protocol/extension values. */
function checkHandshake(kind: HeadKind, head: HttpHead, rng: Rng, violations: string[]): HandshakeOutcome {
  const add = (list: string[]): void => {
    for (const v of list) if (!violations.includes(v) && violations.length < 40) violations.push(v);
  };
  for (const name of ['sec-websocket-protocol', 'sec-websocket-extensions']) {
    const value = listHeader(head, name);
    if (value !== undefined) add(checkTokens(value, rng));
  }
  // One other header value through the tokenizers too (they must cope with anything).
  const names = [...head.headers.keys()];
  if (names.length > 0) add(checkTokens(head.headers.get(rng.pick(names))![0], rng));

  if (kind === 'request') {
    // With an origin allow-list too (no throw, a valid answer); the outcome reported is the one without.
    const withOrigins = noThrow(violations, '[http no-throw]', 'checkUpgradeRequest with origins', () => checkUpgradeRequest(head, { origins: ['https://app.example', 'HTTP://LOCALHOST:3000'] }));
    if (withOrigins !== undefined && isRefusal(withOrigins) && ![400, 403, 405, 426].includes(withOrigins.status)) {
      violations.push(`[http handshake] checkUpgradeRequest with origins refused with ${JSON.stringify(withOrigins).slice(0, 200)}`);
    }
    const r = noThrow(violations, '[http no-throw]', 'checkUpgradeRequest', () => checkUpgradeRequest(head));
    if (r === undefined) return 'threw';
    if (isRefusal(r)) {
      if (![400, 403, 405, 426].includes(r.status) || typeof r.message !== 'string' || Object.values(r.headers).some((v) => typeof v !== 'string' || /[\r\n]/.test(v))) {
        violations.push(`[http handshake] checkUpgradeRequest refused with ${JSON.stringify(r).slice(0, 200)}`);
      }
      return 'refused';
    }
    if (!isValidKey(r.key) || r.head !== head) violations.push(`[http handshake] checkUpgradeRequest accepted key ${JSON.stringify(r.key)}`);
    if (!r.protocols.every(isToken) || new Set(r.protocols).size !== r.protocols.length) violations.push(`[http handshake] checkUpgradeRequest accepted protocols ${JSON.stringify(r.protocols)}`);
    checkNegotiation(r.extensions, rng, violations, 'an accepted request');
    return 'accepted';
  }
  // Also as a client that offered no extension (no throw); the outcome reported is with OFFERED_EXTENSIONS.
  const none = noThrow(violations, '[http no-throw]', 'checkUpgradeResponse without extensions offered', () => checkUpgradeResponse(head, RESPONSE_KEY, OFFERED_PROTOCOLS, []));
  if (none !== undefined && typeof none !== 'string' && none.extensions.length > 0) violations.push(`[http handshake] checkUpgradeResponse accepted extensions that were not offered`);
  const offeredExtensions = OFFERED_EXTENSIONS;
  const r = noThrow(violations, '[http no-throw]', 'checkUpgradeResponse', () => checkUpgradeResponse(head, RESPONSE_KEY, OFFERED_PROTOCOLS, offeredExtensions));
  if (r === undefined) return 'threw';
  if (typeof r === 'string') return 'refused';
  if (r.protocol !== '' && !OFFERED_PROTOCOLS.includes(r.protocol)) violations.push(`[http handshake] checkUpgradeResponse accepted subprotocol ${JSON.stringify(r.protocol)} that was not offered`);
  if (head.status !== 101) violations.push(`[http handshake] checkUpgradeResponse accepted status ${head.status}`);
  for (const e of r.extensions) {
    if (!offeredExtensions.includes(e.name)) violations.push(`[http handshake] checkUpgradeResponse accepted extension ${JSON.stringify(e.name)} that was not offered`);
    checkClientAccept(e, randomDeflateOptions(rng), violations, 'an accepted response');
  }
  return 'accepted';
}

/** What the upgrade check made of an accepted head. */
export type HandshakeOutcome = 'accepted' | 'refused' | 'threw';

/** What {@link checkHead} feeds: a {@link HeadParser}, or a stand-in with the same surface. */
export interface HeadParserLike {
  push(chunk: Buffer): HttpHead | null;
  readonly rest: Buffer;
}

/** Builds the parser under test; the default builds a {@link HeadParser}. */
export type HeadParserFactory = (kind: HeadKind, limits: HeadLimits) => HeadParserLike;

const realParser: HeadParserFactory = (kind, limits) => new HeadParser(kind, limits);

/** Settings of {@link checkHead}. */
export interface HeadCheckOptions {
  /** Request (server side, the default) or response (client side). */
  kind?: HeadKind;
  /** Parser limits. Default: the parser's defaults. */
  limits?: HeadLimits;
  /** Builds the parser under test (tests pass deliberately broken ones to prove the checker catches them). */
  parser?: HeadParserFactory;
}

/** The result of {@link checkHead}. */
export interface HeadReport {
  /** Violated invariants, one line each, prefixed `[http …]`; empty when all held. */
  violations: string[];
  /** What the reference (whole-buffer) run gave: `head`, `incomplete`, `400`, `431` or `threw`. */
  outcome: 'head' | 'incomplete' | '400' | '431' | 'threw';
  /** For a head: what `checkUpgradeRequest` / `checkUpgradeResponse` made of it. */
  handshake?: HandshakeOutcome;
}

/** Random chunkings compared beyond "whole" and "1-byte". */
export const HEAD_RANDOM_CHUNKINGS = 3;

/**
 * Feeds `bytes` to a fresh {@link HeadParser} of `options.kind` with `options.limits` as a whole, in 1-byte
 * chunks (exact-size memory, as sockets deliver) and in {@link HEAD_RANDOM_CHUNKINGS} random chunkings (some
 * with empty chunks), and checks the invariants listed in the module documentation: the parser throws nothing but
 * HeadError 400/431, every chunking gives the same outcome, the limits hold (head size, header count, retained
 * memory), accepted heads have the documented shape, the prototypes stay untouched, and the tokenizers, upgrade
 * checks and negotiation never throw on what was parsed. `parseHead` is also run directly on the raw input.
 * `rng` chooses chunkings and options: the same rng state gives the same checks.
 */
export function checkHead(bytes: Uint8Array, rng: Rng, options: HeadCheckOptions = {}): HeadReport {
  const kind = options.kind ?? 'request';
  const limits = options.limits ?? {};
  const violations: string[] = [];
  const add = (list: string[]): void => {
    for (const v of list) if (!violations.includes(v) && violations.length < 40) violations.push(v);
  };
  const input = Buffer.from(bytes); // private copy: the checks below must not depend on the caller's memory
  const pristine = Buffer.from(input);

  const chunkings: HeadChunking[] = [
    { name: 'whole', cuts: [], allocation: rng.chance(0.5) ? 'exact' : 'pooled' },
    { name: '1-byte/exact', cuts: Array.from({ length: Math.max(0, input.length - 1) }, (_, i) => i + 1), allocation: 'exact' },
  ];
  for (let i = 0; i < HEAD_RANDOM_CHUNKINGS; i++) {
    const cuts = randomCuts(rng, input.length);
    // Empty chunks: a repeated cut point (a few, so their own cost stays small).
    if (rng.chance(0.3)) for (let n = rng.range(1, 8); n > 0; n--) cuts.push(rng.int(input.length + 1));
    cuts.sort((x, y) => x - y);
    const allocation: HeadAllocation = rng.chance(0.6) ? 'exact' : 'pooled';
    chunkings.push({ name: `random#${i + 1}(${cuts.length + 1} chunks)/${allocation}`, cuts, allocation });
  }
  chunkings[0].name = `whole/${chunkings[0].allocation}`;

  const runs: Array<{ chunking: HeadChunking; outcome: HeadOutcome; signature: string }> = [];
  for (const chunking of chunkings) {
    const runViolations: string[] = [];
    const outcome = feedHead(kind, limits, input, chunking, runViolations, options.parser ?? realParser);
    add(runViolations);
    runs.push({ chunking, outcome, signature: outcomeSignature(outcome) });
  }
  for (const run of runs.slice(1)) {
    if (run.signature !== runs[0].signature) {
      add([`[http chunking] [${run.chunking.name}] gives ${run.signature.slice(0, 240)}, [${runs[0].chunking.name}] gives ${runs[0].signature.slice(0, 240)}`]);
    }
  }

  const reference = runs[0].outcome;
  const report: HeadReport = { violations, outcome: reference.type === 'refused' ? (String(reference.status) as '400' | '431') : reference.type };
  if (reference.type === 'head') {
    checkHeadShape(kind, limits, input, reference, violations);
    report.handshake = checkHandshake(kind, reference.head, rng, violations);
  }

  // parseHead on the raw input (not necessarily a head): nothing but a HeadError.
  try {
    parseHead(input, kind, limits.maxHeaders);
  } catch (error) {
    if (!isAllowedHeadError(error)) add([`[http no-throw] parseHead threw on the raw input: ${describeError(error)}`]);
  }
  if (!input.equals(pristine)) add([`[http no-throw] the input was modified`]);
  if (prototypeSnapshot() !== PRISTINE_PROTOTYPES) add([`[http prototype] Object.prototype or Array.prototype changed: ${prototypeSnapshot().slice(0, 200)}`]);
  return report;
}

// ───────────────────────────── campaign ─────────────────────────────

/** A violation found by {@link runHttpCampaign}, with what is needed to save and replay it. */
export interface HttpFinding {
  /** `request` or `response` (a head for {@link checkHead}) or `tokens` (a value for {@link checkTokens}). */
  kind: HeadKind | 'tokens';
  limits: HeadLimits;
  /** The failing input (for `tokens`: the value in latin1). */
  bytes: Buffer;
  /** Seed of the iteration: {@link replayHttpSeed} rebuilds the case. */
  seed: number;
  /** Seed of the rng given to the checker: {@link checkSeedOf}(`seed`). */
  checkSeed: number;
  iteration: number;
  violations: string[];
}

/** Counters of a {@link runHttpCampaign}. */
export interface HttpCampaignStats {
  iterations: number;
  requests: number;
  responses: number;
  /** Hostile token values checked alone. */
  tokenValues: number;
  /** Input bytes checked (heads through several chunkings). */
  bytes: number;
  /** Outcome of the whole-buffer run → count (`head`, `incomplete`, `400`, `431`). */
  outcomes: Record<string, number>;
  /** Upgrade requests and 101 responses the handshake checks accepted. */
  upgrades: number;
  /** Failing iterations. */
  findings: number;
  elapsedMs: number;
}

/** Settings of {@link runHttpCampaign}. */
export interface HttpCampaignOptions {
  /** Wall-clock budget (the fuzzer CLI). At least one of `seconds` and `iterations` must be given. */
  seconds?: number;
  /** Run exactly this many iterations (unless `seconds` runs out first): deterministic with a fixed seed (tests). */
  iterations?: number;
  /** Master seed; iteration seeds are drawn from it. */
  seed: number;
  /** One iteration in this many checks a hostile token value alone (0: none). Default 4. */
  tokensEvery?: number;
  onFinding?: (finding: HttpFinding) => void;
  onProgress?: (stats: HttpCampaignStats) => void;
  progressMs?: number;
}

/** A case of {@link runHttpCampaign} from its iteration seed: a head (`httpCase`) or, for tokens, the value's bytes. */
export function replayHttpSeed(seed: number, tokens: boolean): HeadCase {
  const rng = createRng(seed);
  if (!tokens) return httpCase(rng);
  return { kind: 'request', limits: {}, bytes: Buffer.from(hostileTokenValue(rng, rng.chance(0.9) ? 4000 : 70_000), 'latin1'), origin: 'tokens' };
}

/**
 * Runs handshake fuzz iterations until `seconds` have passed or `iterations` have run: each draws a seed from the master rng and is
 * then fully determined by it, either {@link httpCase} + {@link checkHead} or, one in `tokensEvery`, a
 * {@link hostileTokenValue} + {@link checkTokens}. The same seed gives the same sequence of iterations.
 */
export function runHttpCampaign(options: HttpCampaignOptions): HttpCampaignStats {
  const master = createRng(options.seed);
  const every = options.tokensEvery ?? 4;
  const started = Date.now();
  const deadline = campaignDeadline(started, options);
  const maxIterations = options.iterations ?? Infinity;
  const progressMs = options.progressMs ?? 5000;
  let nextProgress = started + progressMs;
  const stats: HttpCampaignStats = { iterations: 0, requests: 0, responses: 0, tokenValues: 0, bytes: 0, outcomes: {}, upgrades: 0, findings: 0, elapsedMs: 0 };
  for (;;) {
    const now = Date.now();
    if (now >= deadline || stats.iterations >= maxIterations) break;
    if (options.onProgress && now >= nextProgress) {
      stats.elapsedMs = now - started;
      options.onProgress({ ...stats, outcomes: { ...stats.outcomes } });
      nextProgress += progressMs;
    }
    const iteration = stats.iterations++;
    const seed = master.u32();
    const checkSeed = checkSeedOf(seed);
    const tokens = every > 0 && iteration % every === every - 1;
    const c = replayHttpSeed(seed, tokens);
    stats.bytes += c.bytes.length;
    let violations: string[];
    if (tokens) {
      stats.tokenValues++;
      violations = checkTokens(c.bytes.toString('latin1'), createRng(checkSeed));
    } else {
      if (c.kind === 'request') stats.requests++;
      else stats.responses++;
      const report = checkHead(c.bytes, createRng(checkSeed), { kind: c.kind, limits: c.limits });
      violations = report.violations;
      stats.outcomes[report.outcome] = (stats.outcomes[report.outcome] ?? 0) + 1;
      if (report.handshake === 'accepted') stats.upgrades++;
    }
    if (violations.length > 0) {
      stats.findings++;
      options.onFinding?.({ kind: tokens ? 'tokens' : c.kind, limits: c.limits, bytes: c.bytes, seed, checkSeed, iteration, violations });
    }
  }
  stats.elapsedMs = Date.now() - started;
  return stats;
}
