/**
 * A bounded HTTP/1.1 head parser for the opening handshake (RFC 9112 §2–5), sans-I/O.
 *
 * It gathers bytes until the blank line that ends the head, refusing (431) a head over `maxHeadSize` bytes or with
 * more than `maxHeaders` header lines, then splits it in one linear pass — no regular expressions. Header names are
 * lower-cased and kept in a `Map` (never in a plain object, so names like `__proto__` are just names). Obsolete line
 * folding, lines ending in a bare LF and malformed lines are refused (400).
 *
 * @module
 */

/** Defaults of {@link HeadLimits}. */
export const HEAD_DEFAULTS = {
  /** 16 KiB. */
  maxHeadSize: 16 * 1024,
  /** 100 header lines. */
  maxHeaders: 100,
} as const;

/** Limits of {@link HeadParser}. */
export interface HeadLimits {
  /** Largest head in bytes, request or status line included. Default: 16,384. */
  maxHeadSize?: number;
  /** Most header lines. Default: 100. */
  maxHeaders?: number;
}

/** A parsed request or response head. */
export interface HttpHead {
  /** Request: method (`GET`). Response: empty. */
  method: string;
  /** Request: the request target (`/chat?x=1`). Response: empty. */
  target: string;
  /** `HTTP/1.1`. */
  version: string;
  /** Response: the status code. Request: 0. */
  status: number;
  /** Response: the reason phrase. */
  statusText: string;
  /** Header values by lower-case name, in arrival order; a name sent twice has two values. */
  headers: Map<string, string[]>;
}

/** Why a head was refused: 400 malformed, 431 too large. */
export class HeadError extends Error {
  readonly status: 400 | 431;
  constructor(status: 400 | 431, message: string) {
    super(message);
    this.name = 'HeadError';
    this.status = status;
  }
}

const CR = 13;
const LF = 10;

/** RFC 9110 §5.6.2 tchar. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = 1;
for (let c = 97; c <= 122; c++) TCHAR[c] = 1;

function isDigits(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Whether the character code `c` may appear in an RFC 9110 token. */
export function isTokenChar(c: number): boolean {
  return c < 128 && TCHAR[c] === 1;
}

/** Whether `s` is a non-empty RFC 9110 token. */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || TCHAR[c] === 0) return false;
  }
  return true;
}

/**
 * Incremental head parser: `push` chunks until it returns the head; the bytes after the head (the first frames,
 * if the peer sent them early) are in {@link HeadParser.rest}. Throws {@link HeadError} on a malformed or oversize
 * head (the caller answers with its status).
 */
export class HeadParser {
  /** Bytes received after the head (a zero-length buffer shared by all parsers when there are none). */
  rest: Buffer = EMPTY;
  private readonly maxHeadSize: number;
  private readonly maxHeaders: number;
  private readonly kind: 'request' | 'response';
  /** The head so far, copied: reads are not kept, so a head sent a byte at a time costs its bytes, not its reads. */
  private buffer: Buffer | null = null;
  private size = 0;
  /** How many bytes of CR LF CR LF the bytes so far end with (0–3). */
  private matched = 0;
  /** The last byte of the head so far (-1 before any), to tell CR LF from a bare LF across chunks. */
  private lastByte = -1;

  constructor(kind: 'request' | 'response', limits: HeadLimits = {}) {
    this.kind = kind;
    this.maxHeadSize = limits.maxHeadSize ?? HEAD_DEFAULTS.maxHeadSize;
    this.maxHeaders = limits.maxHeaders ?? HEAD_DEFAULTS.maxHeaders;
  }

  /** Adds bytes; returns the head once complete, else null. Linear in the bytes pushed, however they are split. */
  push(chunk: Buffer): HttpHead | null {
    if (chunk.length === 0) return null;
    if (this.size === 0 && this.matched === 0 && this.lastByte === -1) {
      // The common case: the whole head in the first chunk, within the limit. Decoded once, checked and split as a
      // string (no native call per line, no buffer views); anything else takes the general path below, which
      // reports the same faults in the same order.
      const found = chunk.indexOf(TERMINATOR);
      if (found !== -1 && found + 4 <= this.maxHeadSize) {
        const text = chunk.toString('latin1', 0, found + 2);
        for (let lf = text.indexOf('\n'); lf !== -1; lf = text.indexOf('\n', lf + 1)) {
          if (lf === 0 || text.charCodeAt(lf - 1) !== CR) throw new HeadError(400, 'a header line ends in a bare LF (CR LF is required)');
        }
        this.rest = found + 4 === chunk.length ? EMPTY : chunk.subarray(found + 4);
        return parseHeadText(text, this.kind, this.maxHeaders);
      }
    }
    // Where in `chunk` the head ends (index just past CR LF CR LF), or -1.
    let end = -1;
    let i = 0;
    // Finish a terminator begun in earlier chunks.
    while (this.matched > 0 && i < chunk.length) {
      if (chunk[i] === (this.matched & 1 ? LF : CR)) {
        i++;
        if (++this.matched === 4) {
          end = i;
          break;
        }
      } else {
        this.matched = 0;
      }
    }
    if (end === -1 && this.matched === 0) {
      const found = chunk.indexOf(TERMINATOR, i);
      if (found !== -1) end = found + 4;
      else {
        // Remember a partial terminator at the end of the chunk.
        let k = chunk.length;
        while (k > i && k > chunk.length - 3 && (chunk[k - 1] === CR || chunk[k - 1] === LF)) k--;
        for (let j = k; j < chunk.length; j++) this.matched = chunk[j] === (this.matched & 1 ? LF : CR) ? this.matched + 1 : chunk[j] === CR ? 1 : 0;
      }
    }
    // A line must end in CR LF (RFC 9112 §2.2): a bare LF is refused at once, not left to wait for a terminator
    // that will never come.
    const scanEnd = end === -1 ? chunk.length : end;
    for (let lf = chunk.indexOf(LF); lf !== -1 && lf < scanEnd; lf = chunk.indexOf(LF, lf + 1)) {
      if ((lf > 0 ? chunk[lf - 1] : this.lastByte) !== CR) {
        // Whatever the chunking, the first fault in byte order decides: a head already over the limit before this
        // LF is a 431, as it is when the bytes come one at a time.
        if (this.size + lf > this.maxHeadSize) throw new HeadError(431, `${this.kind} head over ${this.maxHeadSize} bytes`);
        throw new HeadError(400, 'a header line ends in a bare LF (CR LF is required)');
      }
    }
    if (scanEnd > 0) this.lastByte = chunk[scanEnd - 1];
    const headBytes = this.size + scanEnd;
    if (headBytes > this.maxHeadSize) throw new HeadError(431, `${this.kind} head over ${this.maxHeadSize} bytes`);
    if (end === -1) {
      this.append(chunk);
      return null;
    }
    let all: Buffer;
    if (this.size === 0) {
      all = chunk.subarray(0, end);
    } else {
      this.append(chunk.subarray(0, end));
      all = this.buffer!.subarray(0, this.size);
    }
    this.rest = chunk.subarray(end);
    this.buffer = null;
    this.size = 0;
    this.matched = 0;
    this.lastByte = -1;
    return parseHead(all.subarray(0, headBytes - 2), this.kind, this.maxHeaders);
  }

  /** Copies bytes into the growing head buffer (doubling, at most the head limit). */
  private append(bytes: Buffer): void {
    const need = this.size + bytes.length;
    if (this.buffer === null || need > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(need, (this.buffer?.length ?? 512) * 2), this.maxHeadSize + 4));
      if (this.buffer !== null) this.buffer.copy(grown, 0, 0, this.size);
      this.buffer = grown;
    }
    bytes.copy(this.buffer, this.size);
    this.size = need;
  }
}

const TERMINATOR = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);

/** Parses a complete head (start line and header lines, each ending in CRLF, without the final blank line). */
export function parseHead(bytes: Buffer, kind: 'request' | 'response', maxHeaders: number = HEAD_DEFAULTS.maxHeaders): HttpHead {
  return parseHeadText(bytes.toString('latin1'), kind, maxHeaders);
}

/** {@link parseHead} of the head's bytes decoded as latin1. */
function parseHeadText(text: string, kind: 'request' | 'response', maxHeaders: number): HttpHead {
  let lineEnd = text.indexOf('\r\n');
  const start = text.slice(0, lineEnd);
  const head: HttpHead = { method: '', target: '', version: '', status: 0, statusText: '', headers: new Map() };
  const sp1 = start.indexOf(' ');
  const sp2 = sp1 === -1 ? -1 : start.indexOf(' ', sp1 + 1);
  // The start line holds visible ASCII and single spaces only (reason phrases may hold tabs and obs-text).
  for (let i = 0; i < start.length; i++) {
    const c = start.charCodeAt(i);
    if ((c < 0x20 && c !== 9) || c === 0x7f || (c === 9 && kind === 'request')) throw new HeadError(400, `control character in the ${kind === 'request' ? 'request' : 'status'} line`);
    if (c > 0x7e && kind === 'request') throw new HeadError(400, 'non-ASCII byte in the request line');
  }
  if (kind === 'request') {
    if (sp1 <= 0 || sp2 === -1 || start.indexOf(' ', sp2 + 1) !== -1) throw new HeadError(400, 'malformed request line');
    head.method = start.slice(0, sp1);
    head.target = start.slice(sp1 + 1, sp2);
    head.version = start.slice(sp2 + 1);
    if (!isToken(head.method) || head.target.length === 0) throw new HeadError(400, 'malformed request line');
  } else {
    if (sp1 <= 0) throw new HeadError(400, 'malformed status line');
    head.version = start.slice(0, sp1);
    const code = start.slice(sp1 + 1, sp2 === -1 ? undefined : sp2);
    head.statusText = sp2 === -1 ? '' : start.slice(sp2 + 1);
    if (code.length !== 3 || !isDigits(code) || code < '100') throw new HeadError(400, 'malformed status code');
    head.status = Number(code);
  }
  if (head.version !== 'HTTP/1.1' && head.version !== 'HTTP/1.0') throw new HeadError(400, `unsupported HTTP version ${JSON.stringify(head.version.slice(0, 16))}`);
  let count = 0;
  let at = lineEnd + 2;
  while (at < text.length) {
    lineEnd = text.indexOf('\r\n', at);
    if (++count > maxHeaders) throw new HeadError(431, `more than ${maxHeaders} header lines`);
    const first = text.charCodeAt(at);
    if (first === 32 || first === 9) throw new HeadError(400, 'obsolete header line folding');
    const colon = text.indexOf(':', at);
    if (colon === -1 || colon > lineEnd) throw new HeadError(400, 'header line without a colon');
    let key = knownName(text, at, colon);
    if (key === undefined) {
      const name = text.slice(at, colon);
      if (!isToken(name)) throw new HeadError(400, 'invalid header name');
      key = name.toLowerCase();
    }
    let vs = colon + 1;
    let ve = lineEnd;
    while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--;
    for (let i = vs; i < ve; i++) {
      const c = text.charCodeAt(i);
      if ((c < 32 && c !== 9) || c === 127) throw new HeadError(400, 'control character in a header value');
    }
    const value = text.slice(vs, ve);
    const list = head.headers.get(key);
    if (list === undefined) head.headers.set(key, [value]);
    else list.push(value);
    at = lineEnd + 2;
  }
  return head;
}

/**
 * Header names an upgrade request usually carries, lower-case, by length: a name in the head that matches one
 * (in any case) is that constant string, so the parser makes no string for it, no lower-case copy and no hash.
 */
const KNOWN_NAMES: ReadonlyArray<readonly string[] | undefined> = (() => {
  const byLength: string[][] = [];
  for (const name of [
    'host', 'upgrade', 'connection', 'origin', 'pragma', 'cookie', 'user-agent', 'cache-control', 'authorization',
    'accept-encoding', 'accept-language', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol',
    'sec-websocket-extensions', 'x-forwarded-for', 'x-forwarded-proto', 'x-real-ip', 'forwarded',
  ]) {
    (byLength[name.length] ??= []).push(name);
  }
  return byLength;
})();

/** The {@link KNOWN_NAMES} entry equal, ignoring ASCII case, to `text` from `start` to `end`; else undefined. */
function knownName(text: string, start: number, end: number): string | undefined {
  const candidates = KNOWN_NAMES[end - start];
  if (candidates === undefined) return undefined;
  next: for (let k = 0; k < candidates.length; k++) {
    const name = candidates[k];
    for (let i = 0; i < name.length; i++) {
      const c = text.charCodeAt(start + i);
      if ((c >= 65 && c <= 90 ? c + 32 : c) !== name.charCodeAt(i)) continue next;
    }
    return name;
  }
  return undefined;
}

/** The one value of a header, `undefined` when absent, `null` when sent more than once. */
export function singleHeader(head: HttpHead, name: string): string | undefined | null {
  const values = head.headers.get(name);
  if (values === undefined) return undefined;
  return values.length === 1 ? values[0] : null;
}

/** All values of a header joined as one comma-separated list (RFC 9110 §5.3), or undefined when absent. */
export function listHeader(head: HttpHead, name: string): string | undefined {
  const values = head.headers.get(name);
  if (values === undefined) return undefined;
  return values.length === 1 ? values[0] : values.join(', ');
}

/** Whether a comma-separated header value contains `token`, compared case-insensitively. */
export function hasToken(value: string | undefined | null, token: string): boolean {
  if (!value) return false;
  const want = token.toLowerCase();
  // The usual header holds just the token (`Upgrade: websocket`, `Connection: Upgrade`): no split.
  if (value.length === want.length) return value.toLowerCase() === want;
  let at = 0;
  while (at <= value.length) {
    let end = value.indexOf(',', at);
    if (end === -1) end = value.length;
    if (value.slice(at, end).trim().toLowerCase() === want) return true;
    at = end + 1;
  }
  return false;
}
