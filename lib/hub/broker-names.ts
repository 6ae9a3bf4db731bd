/**
 * Naming on the brokers, for the Redis and NATS backplanes: percent-escaping of name segments (so that a broker's
 * wildcard and separator characters in a tenant or topic are plain text), the mapping of a hub pattern (`*` one
 * segment, `#` zero or more) onto NATS subjects and onto a Redis glob, and the node that owns a connection id.
 * Pure functions; imports nothing.
 *
 * Internal to the hub, not a package entry point. Not tagged internal here: in a file's first comment the tag
 * attaches to the first statement, which `stripInternal` then drops from the declarations.
 *
 * @module
 */

/**
 * Percent-escapes the characters of one name segment that a broker gives meaning to (and `%` itself), so
 * `a*`, `>` or `[x]` are plain text on every broker. `extra` lists further characters to escape.
 */
export function escapeSegment(segment: string, extra: string): string {
  let out = '';
  for (const ch of segment) {
    if (ch === '%' || extra.includes(ch)) out += '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');
    else out += ch;
  }
  return out;
}

/** Inverse of {@link escapeSegment}. */
export function unescapeSegment(segment: string): string {
  return segment.includes('%') ? segment.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))) : segment;
}

/**
 * Maps a hub pattern (`*` one segment, `#` zero or more) onto NATS subject suffixes (after `<base>.`): `*` stays
 * `*`; a trailing `#` becomes the prefix itself plus `prefix.>`; `#` alone becomes `>`; a `#` anywhere else
 * truncates the subject there with `>` (broader — the hub filters locally). Segments are escaped with `esc`.
 */
export function natsPatternSubjects(pattern: string, esc: (s: string) => string): string[] {
  const segs = pattern.split('.');
  const out: string[] = [];
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    if (s === '#') {
      if (i === segs.length - 1 && i > 0) return [out.join('.'), [...out, '>'].join('.')];
      out.push('>');
      return [out.join('.')];
    }
    out.push(s === '*' ? '*' : esc(s));
  }
  return [out.join('.')];
}

/**
 * Maps a hub pattern onto one Redis glob (after `<base>`): literal characters `? * [ ] \` are escaped with a
 * backslash; `*` becomes `*` (which in Redis also crosses dots: broader, filtered locally); `#` becomes `*` and
 * absorbs one neighbouring dot so that "zero segments" still matches (`a.#` → `a*`, `a.#.b` → `a.*b`, `#.b` → `*b`).
 */
export function redisPatternGlob(pattern: string, esc: (s: string) => string): string {
  const segs = pattern.split('.');
  let out = '';
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    const last = i === segs.length - 1;
    if (s === '#') {
      out = out.endsWith('.') && last ? out.slice(0, -1) + '*' : out + '*';
      continue; // `#` absorbs the following dot.
    }
    out += (s === '*' ? '*' : esc(s).replace(/[?*[\]\\]/g, (c) => '\\' + c)) + (last ? '' : '.');
  }
  return out;
}

/** The node that owns a connection id (`${nodeId}.${n}`), or null for a malformed id. */
export function ownerNode(connectionId: string): string | null {
  if (typeof connectionId !== 'string') return null;
  const dot = connectionId.indexOf('.');
  return dot > 0 ? connectionId.slice(0, dot) : null;
}
