/**
 * Option-name checks: an option object with a name the API does not know is a TypeError, never a setting silently
 * ignored (ws's `verifyClient` or `maxPayload` passed here would otherwise leave every client in, or no limit but
 * the default). The message names the equivalent when there is one — ws's names above all — or the closest known
 * name for a typo.
 *
 * @module
 */

/** What to say about a name that is not an option: its equivalent here, or why there is none. */
export type OptionHints = Readonly<Record<string, string>>;

/**
 * ws's option names (server, client and permessage-deflate) that have no option of the same name in this engine,
 * with what to use instead. Shared by every option object that could receive them.
 */
export const WS_OPTION_HINTS: OptionHints = {
  verifyClient: "ws's verifyClient is authenticate here: (request) => { principal } to accept, false or { reject: true, status } to refuse (may be async)",
  maxPayload: "ws's maxPayload is maxMessageSize here (bytes; default 64 MiB)",
  handleProtocols: "ws's handleProtocols is selectProtocol here: (offered: string[], request) => string | undefined",
  clientTracking: 'connections are always tracked, in server.clients: remove the option',
  server:
    "to attach to a node:http(s) server, create this one with noServer: true and call server.handleUpgrade(req, socket, head) from the HTTP server's 'upgrade' event",
  backlog: "not supported: the standalone server listens with Node's default backlog",
  skipUTF8Validation: 'not supported: text messages and close reasons are always validated (RFC 6455 §8.1)',
  WebSocket: "not supported: connections are the engine's WebSocketConnection (keep per-connection state in conn.data)",
  allowSynchronousEvents: "not needed: events are always emitted synchronously (ws's allowSynchronousEvents: true)",
  maxFragments: 'use fragmentOverhead: every fragment after the first counts that many bytes toward maxMessageSize',
  maxBufferedChunks: 'not needed: small pieces of a message are copied into blocks, so what a message holds is bounded by maxMessageSize',
  maxPendingAutoPongs: 'use maxPongBacklog: bytes of unsent data above which a ping cuts the connection instead of queueing a pong',
  protocolVersion: 'not supported: only WebSocket version 13 (RFC 6455) is spoken',
  generateMask: 'not supported: masking keys come from a cryptographically secure pool',
  finishRequest: 'not supported: give request headers with headers (and origin)',
  timeout: 'use handshakeTimeout (milliseconds for TCP, TLS and the upgrade together)',
  protocol: 'use protocols (a string or an array, in preference order)',
  auth: "not supported: send headers: { Authorization: 'Basic …' }",
  agent: 'not supported: connections are made with node:net / node:tls directly',
  createConnection: 'not supported: connections are made with node:net / node:tls directly',
  socketPath: 'not supported: ws+unix URLs and socket paths are not',
  lookup: 'not supported: the host name is resolved by node:net',
  family: 'not supported: the host name is resolved by node:net',
  localAddress: 'not supported: the local address is chosen by the system',
  maxHeaderSize: 'use maxHeadSize (bytes of the HTTP head)',
  // ws's permessage-deflate options.
  concurrencyLimit: "ws's concurrencyLimit is concurrency here",
  zlibDeflateOptions: "use level and memLevel (zlib's other deflate settings are not configurable)",
  zlibInflateOptions: 'not supported: inflation uses the negotiated window and stops at maxMessageSize',
};

/** node:tls option names: given at the top level, they belong in `tls`. */
const TLS_NAMES = [
  'key', 'cert', 'ca', 'pfx', 'passphrase', 'crl', 'ciphers', 'ecdhCurve', 'dhparam', 'minVersion', 'maxVersion',
  'secureOptions', 'secureProtocol', 'secureContext', 'sigalgs', 'honorCipherOrder', 'sessionIdContext', 'ticketKeys',
  'requestCert', 'rejectUnauthorized', 'servername', 'checkServerIdentity', 'ALPNProtocols', 'SNICallback', 'session',
];

/** Adds "put it under `tls`" for every node:tls option name. */
export function withTlsHints(hints: OptionHints): OptionHints {
  const out: Record<string, string> = { ...hints };
  for (const name of TLS_NAMES) out[name] ??= `a TLS option: give it as tls: { ${name} }`;
  return out;
}

/**
 * Throws a TypeError for the first own property of `options` that is not in `accepted` (a property set to
 * `undefined` sets nothing and is let through): `what: unknown option "name"`, then its hint, or the known name it
 * is closest to, or the accepted names.
 */
export function checkOptionNames(what: string, options: object, accepted: ReadonlySet<string>, hints: OptionHints = WS_OPTION_HINTS): void {
  for (const name in options) {
    if (accepted.has(name) || !Object.hasOwn(options, name) || (options as Record<string, unknown>)[name] === undefined) continue;
    throw new TypeError(`${what}: unknown option "${name}": ${hintFor(name, accepted, hints)}`);
  }
}

function hintFor(name: string, accepted: ReadonlySet<string>, hints: OptionHints): string {
  if (Object.hasOwn(hints, name)) return hints[name];
  const near = closest(name, accepted);
  if (near !== undefined) return `did you mean ${near}?`;
  return `accepted: ${[...accepted].sort().join(', ')}`;
}

/** The accepted name nearest to `name` (same name in another case, or at most two edits away), if any. */
function closest(name: string, accepted: ReadonlySet<string>): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.min(2, Math.floor(name.length / 3)) + 1;
  for (const candidate of accepted) {
    if (candidate.toLowerCase() === lower) return candidate;
    const d = distance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best;
}

/** Levenshtein distance (option names are short). */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length];
}
