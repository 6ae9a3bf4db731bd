/**
 * Hand-written tokenizers for `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` (RFC 6455 §4.3, §9.1;
 * RFC 9110 §5.6). One left-to-right pass each, no regular expressions, so a 64 KB header of spaces, commas,
 * backslashes or unclosed quotes costs linear time. Results are arrays and `Map`s: a parameter named `__proto__`
 * is just a name.
 *
 * @module
 */
import { isToken, isTokenChar as isTchar } from './http1.js';

/** One extension offer (or the accepted one): its name and parameters in order (`true` for a bare parameter). */
export interface ExtensionOffer {
  name: string;
  params: Array<[string, string | true]>;
}

/**
 * Splits a `Sec-WebSocket-Protocol` value into its subprotocol names. Returns null when any element is not a token
 * or the list is empty (RFC 6455 §4.1: the elements MUST be unique tokens; duplicates are refused too).
 */
export function parseProtocols(value: string): string[] | null {
  const out: string[] = [];
  const seen = new Set<string>();
  let at = 0;
  while (at <= value.length) {
    let end = value.indexOf(',', at);
    if (end === -1) end = value.length;
    let s = at;
    let e = end;
    while (s < e && isWhite(value.charCodeAt(s))) s++;
    while (e > s && isWhite(value.charCodeAt(e - 1))) e--;
    if (s < e) {
      const name = value.slice(s, e);
      if (!isToken(name) || seen.has(name)) return null;
      seen.add(name);
      out.push(name);
    }
    at = end + 1;
  }
  return out.length > 0 ? out : null;
}

function isWhite(c: number): boolean {
  return c === 32 || c === 9;
}

/** Most extension offers in one header (32): more is refused as malformed. */
export const MAX_EXTENSION_OFFERS = 32;
/** Most parameters in one extension offer (16): more is refused as malformed. */
export const MAX_EXTENSION_PARAMS = 16;

/**
 * Parses a `Sec-WebSocket-Extensions` value: `ext *( ";" param ) *( "," ext … )`, where a parameter is a token with
 * an optional `= token` or `= quoted-string` value (RFC 6455 §9.1). Returns null on any syntax error, and beyond
 * {@link MAX_EXTENSION_OFFERS} offers or {@link MAX_EXTENSION_PARAMS} parameters in one offer (bounded memory).
 */
export function parseExtensions(value: string): ExtensionOffer[] | null {
  const out: ExtensionOffer[] = [];
  const n = value.length;
  let i = 0;
  const skipWhite = (): void => {
    while (i < n && isWhite(value.charCodeAt(i))) i++;
  };
  const token = (): string | null => {
    const start = i;
    while (i < n && isTchar(value.charCodeAt(i))) i++;
    return i > start ? value.slice(start, i) : null;
  };
  while (true) {
    skipWhite();
    if (i < n && value.charCodeAt(i) === 44) {
      // Empty list element (RFC 9110 §5.6.1: recipients accept and ignore them).
      i++;
      continue;
    }
    if (i >= n) break;
    const name = token();
    if (name === null) return null;
    const offer: ExtensionOffer = { name, params: [] };
    skipWhite();
    while (i < n && value.charCodeAt(i) === 59) {
      i++;
      skipWhite();
      const param = token();
      if (param === null) return null;
      skipWhite();
      let paramValue: string | true = true;
      if (i < n && value.charCodeAt(i) === 61) {
        i++;
        skipWhite();
        if (i < n && value.charCodeAt(i) === 34) {
          // quoted-string; RFC 6455 §9.1: its unescaped content must itself be a token, so any other character
          // ends the parse at once. Escapes are rare: the value is sliced, not built a character at a time.
          i++;
          let text = '';
          let segment = i;
          let closed = false;
          while (i < n) {
            const c = value.charCodeAt(i);
            if (c === 34) {
              text += value.slice(segment, i);
              closed = true;
              i++;
              break;
            }
            if (c === 92) {
              text += value.slice(segment, i);
              i++;
              segment = i;
              if (i >= n) return null;
            }
            if (!isTchar(value.charCodeAt(i))) return null;
            i++;
          }
          if (!closed || text.length === 0) return null;
          paramValue = text;
        } else {
          const v = token();
          if (v === null) return null;
          paramValue = v;
        }
        skipWhite();
      }
      if (offer.params.length === MAX_EXTENSION_PARAMS) return null;
      offer.params.push([param.toLowerCase(), paramValue]);
    }
    if (out.length === MAX_EXTENSION_OFFERS) return null;
    out.push(offer);
    if (i >= n) break;
    if (value.charCodeAt(i) !== 44) return null;
    i++;
  }
  return out;
}

/** Serializes extensions back into a header value (`permessage-deflate; client_max_window_bits=10`). */
export function formatExtensions(offers: ExtensionOffer[]): string {
  return offers
    .map((o) => [o.name, ...o.params.map(([k, v]) => (v === true ? k : `${k}=${v}`))].join('; '))
    .join(', ');
}
