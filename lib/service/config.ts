/**
 * The hub service's configuration: one table of options, each with its flag, its environment variable, its kind,
 * its default and its help line. Parsing, validation, `--help` and the start-up summary are all driven by the table,
 * so adding an option is one entry.
 *
 * Precedence: a command-line flag wins over its environment variable, which wins over the config file
 * (`--config wsengine.json`), which wins over the default. Flags are
 * written `--name value` or `--name=value`; booleans take no value (`--dev`) or an explicit `--dev=false`.
 * Durations are milliseconds, or a number with a unit (`250ms`, `30s`, `5m`, `1h`); sizes are bytes, or a number
 * with a unit (`64k`/`64KiB`, `1m`/`1MiB`; units are binary).
 *
 * The config file is one JSON object: any option by its flag name (`"history-size": 200`, `"origins":
 * ["https://app.example"]`, `"dev": true`; values as JSON numbers, booleans, strings or, for lists, arrays), plus
 * the sections only a file can hold: `"permissions"` (channel permissions, see `lib/hub/permissions.ts`) and
 * `"hooks"` (backend hooks). An unknown key is an error naming the file and the key.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { type PermissionOptions, Permissions } from '../hub/permissions.js';
import { parseHooks } from './hooks.js';

/** What {@link parseConfig} returns: every option with its value (defaults filled in). */
export interface ServiceConfig {
  /** TCP port; 0 picks a free one. Default: 8080. */
  port: number;
  /** Interface to listen on. Default: `127.0.0.1` (use `0.0.0.0` to accept remote clients). */
  host: string;
  /** HMAC secret for HS256/384/512 tokens. Default: none. */
  jwtSecret: string | undefined;
  /** PEM text of the public key for RS*, PS*, ES*, EdDSA tokens, read from the file named by `--jwt-public-key`. */
  jwtPublicKey: string | undefined;
  /** Accepted `aud` values. Default: `aud` not checked. */
  jwtAudience: string[] | undefined;
  /** Accepted `iss` values. Default: `iss` not checked. */
  jwtIssuer: string[] | undefined;
  /** Key for the HTTP API (`Authorization: Bearer <key>`). Default: none (the HTTP API answers 401 to everything). */
  apiKey: string | undefined;
  /** Allowed `Origin` values for WebSocket upgrades. Default: any origin. */
  origins: string[] | undefined;
  /** Largest inbound message, in bytes (close 1009 above it). Default: 65,536. */
  maxMessageSize: number;
  /** Open sockets per user; one more evicts the oldest with 4429. Default: 5. */
  maxConnectionsPerUser: number;
  /** Subscriptions per connection. Default: 100. */
  maxSubscriptions: number;
  /** Milliseconds between app-level and protocol pings. Default: 30,000. */
  heartbeatInterval: number;
  /** Milliseconds without a pong before close 4408. Default: 60,000. */
  heartbeatTimeout: number;
  /** Milliseconds a connection without a token has to send `{"type":"auth","token"}`, then 4401. Default: 5,000. */
  authDeadline: number;
  /** Messages kept per topic for resume. Default: 100. */
  historySize: number;
  /** Milliseconds a message stays in a topic's history. Default: 300,000 (5 minutes). */
  historyTtl: number;
  /** Bytes of history the in-memory backplane keeps in all; beyond it the oldest message goes. Default: 64 MiB. */
  historyMaxBytes: number;
  /** Bytes of history the in-memory backplane keeps per topic; beyond it the topic's oldest message goes. Default: 8 MiB. */
  historyTopicMaxBytes: number;
  /** Inbound messages per second per connection (bursts up to as many) before `rate_limited` errors; 0: no limit. Default: 100. */
  inboundRate: number;
  /** What happens to a subscriber whose outbound buffer is full. Default: `disconnect` (close 1008). */
  slowConsumer: 'drop' | 'disconnect';
  /** Outbound bytes buffered per connection before the slow-consumer policy applies. Default: 1 MiB. */
  maxBuffered: number;
  /** Most messages one resume replays; beyond it the ack reports the gaps instead. Default: 1,000. */
  maxReplayMessages: number;
  /** Most bytes one resume replays; beyond it the ack reports the gaps instead. Default: 8 MiB. */
  maxReplayBytes: number;
  /** Messages in a `history` answer without `limit` (socket and HTTP). Default: 100. */
  historyLimit: number;
  /** Largest `limit` of a `history` request. Default: 1,000. */
  maxHistoryLimit: number;
  /** Bytes of messages in one `history` answer (at least one message). Default: 256 KiB. */
  maxHistoryBytes: number;
  /** Largest HTTP API request body, in bytes (413 above it). Default: 1 MiB. */
  maxBodySize: number;
  /** Milliseconds to wait for closing handshakes on SIGTERM / SIGINT before destroying sockets. Default: 5,000. */
  shutdownTimeout: number;
  /** Redis URL for running several hubs together (scale-out). Default: none (single process). */
  redis: string | undefined;
  /** NATS URL for running several hubs together (scale-out). Default: none (single process). */
  nats: string | undefined;
  /** With a broker: prefix of every key, channel, subject and stream, so several deployments share one broker. Default: `wsengine`. */
  brokerPrefix: string;
  /** With a broker: milliseconds between this hub's liveness heartbeats. Default: 5,000. */
  nodeHeartbeat: number;
  /**
   * With a broker: milliseconds without a heartbeat after which a hub counts as dead; its connections (per-user
   * limit) and presence entries then stop counting and are removed. Default: undefined — the adapter's
   * max(15,000, 3 × heartbeat).
   */
  nodeTtl: number | undefined;
  /** Development mode: generated secret and API key, a token endpoint for the demo page. Default: false. */
  dev: boolean;
  /**
   * PEM text of the TLS certificate chain, read from the file named by `--tls-cert`. With `tlsKey`, the service
   * speaks HTTPS on its port: HTTP/2 and HTTP/1.1 (ALPN), WebSockets over both (RFC 8441 extended CONNECT and the
   * HTTP/1.1 upgrade). Default: none (plain HTTP/1.1).
   */
  tlsCert: string | undefined;
  /** PEM text of the TLS private key, read from the file named by `--tls-key` (with `tlsCert`). Default: none. */
  tlsKey: string | undefined;
  /** The config file read (`--config`). Default: none. */
  config: string | undefined;
  /**
   * Channel permissions, from the config file's `"permissions"` section. Default: none — then the service applies
   * its own default (see the README's "Channel permissions"): `user.{sub}.#` owner-only, the rest open to signed-in
   * clients; with `--dev`, everything open.
   */
  permissions: PermissionOptions | undefined;
  /**
   * Backend hooks, from the config file's `"hooks"` section as written (checked here with `parseHooks`, and built by
   * the hub adapter; see `lib/service/hooks.ts`). Default: none. With a `connect` hook, no JWT key is required.
   */
  hooks: unknown;
}

/** A configuration error: names the flag (and the variable when the value came from the environment). */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Kind = 'port' | 'int' | 'bytes' | 'duration' | 'string' | 'secret' | 'list' | 'pem-file' | 'boolean' | 'enum' | 'url';

interface OptionSpec {
  /** Long flag name without the dashes. */
  flag: string;
  key: keyof ServiceConfig;
  kind: Kind;
  /** Default value (already parsed); undefined: none. */
  default: unknown;
  help: string;
  /** Help text for the default when the value alone says too little. */
  defaultText?: string;
  min?: number;
  max?: number;
  /** For `enum`. */
  values?: readonly string[];
  /** For `url`: accepted schemes (without the colon). */
  schemes?: readonly string[];
  /** For `string`: the value must match, described by `patternText`. */
  pattern?: RegExp;
  patternText?: string;
}

const KIB = 1024;
const MIB = 1024 * 1024;

/**
 * Every option of `wsengine hub`. To add one: add a field to {@link ServiceConfig} and an entry here; parsing,
 * `--help`, the environment variable (`WSENGINE_` + the flag in upper snake case) and the summary follow.
 */
export const OPTIONS: readonly OptionSpec[] = Object.freeze([
  { flag: 'port', key: 'port', kind: 'port', default: 8080, help: 'TCP port (0: any free port)' },
  { flag: 'host', key: 'host', kind: 'string', default: '127.0.0.1', help: 'interface to listen on (0.0.0.0: every interface)' },
  { flag: 'jwt-secret', key: 'jwtSecret', kind: 'secret', default: undefined, help: 'HMAC secret for HS256/HS384/HS512 tokens (at least 32 characters)' },
  { flag: 'jwt-public-key', key: 'jwtPublicKey', kind: 'pem-file', default: undefined, help: 'PEM file with the public key for RS*, PS*, ES*, EdDSA tokens' },
  { flag: 'jwt-audience', key: 'jwtAudience', kind: 'list', default: undefined, help: 'accepted token audiences, comma-separated', defaultText: 'not checked' },
  { flag: 'jwt-issuer', key: 'jwtIssuer', kind: 'list', default: undefined, help: 'accepted token issuers, comma-separated', defaultText: 'not checked' },
  { flag: 'api-key', key: 'apiKey', kind: 'secret', default: undefined, help: 'key of the HTTP API (Authorization: Bearer <key>)', defaultText: 'none: /api/* answers 401' },
  { flag: 'origins', key: 'origins', kind: 'list', default: undefined, help: 'allowed Origin values for WebSocket upgrades, comma-separated (others get 403)', defaultText: 'any origin' },
  { flag: 'max-message-size', key: 'maxMessageSize', kind: 'bytes', default: 64 * KIB, min: 1, max: 256 * MIB, help: 'largest inbound message (close 1009 above)' },
  { flag: 'max-connections-per-user', key: 'maxConnectionsPerUser', kind: 'int', default: 5, min: 1, max: 1_000_000, help: 'open sockets per user; one more closes the oldest with 4429' },
  { flag: 'max-subscriptions', key: 'maxSubscriptions', kind: 'int', default: 100, min: 1, max: 1_000_000, help: 'subscriptions per connection' },
  { flag: 'heartbeat-interval', key: 'heartbeatInterval', kind: 'duration', default: 30_000, min: 10, help: 'interval of app-level {"type":"ping"} and protocol pings' },
  { flag: 'heartbeat-timeout', key: 'heartbeatTimeout', kind: 'duration', default: 60_000, min: 10, help: 'no pong for this long: close 4408' },
  { flag: 'auth-deadline', key: 'authDeadline', kind: 'duration', default: 5_000, min: 10, help: 'time a connection without a token has to send {"type":"auth","token"} (then 4401)' },
  { flag: 'history-size', key: 'historySize', kind: 'int', default: 100, min: 0, max: 10_000_000, help: 'messages kept per topic for resume (0: no history)' },
  { flag: 'history-ttl', key: 'historyTtl', kind: 'duration', default: 300_000, min: 1, help: 'how long a message stays in a topic\'s history' },
  { flag: 'history-max-bytes', key: 'historyMaxBytes', kind: 'bytes', default: 64 * MIB, min: 0, help: 'bytes of history kept in memory in all topics; beyond it the oldest message is dropped (not used with --redis/--nats: the broker holds the history)' },
  { flag: 'history-topic-max-bytes', key: 'historyTopicMaxBytes', kind: 'bytes', default: 8 * MIB, min: 0, help: 'bytes of history kept in memory per topic; beyond it the topic\'s oldest message is dropped (not used with --redis/--nats)' },
  { flag: 'inbound-rate', key: 'inboundRate', kind: 'int', default: 100, min: 0, max: 10_000_000, help: 'inbound messages per second per connection, in bursts of as many, before rate_limited errors (0: no limit)' },
  { flag: 'slow-consumer', key: 'slowConsumer', kind: 'enum', values: ['disconnect', 'drop'], default: 'disconnect', help: 'full outbound buffer: close the connection (1008), or drop messages and send the client a gap report' },
  { flag: 'max-buffered', key: 'maxBuffered', kind: 'bytes', default: MIB, min: 1, help: 'outbound bytes buffered per connection before the slow-consumer policy applies' },
  { flag: 'max-replay-messages', key: 'maxReplayMessages', kind: 'int', default: 1_000, min: 0, max: 10_000_000, help: 'most messages one resume (subscribe with since) replays; beyond it nothing is replayed and the ack reports the exact gaps' },
  { flag: 'max-replay-bytes', key: 'maxReplayBytes', kind: 'bytes', default: 8 * MIB, min: 0, help: 'most bytes one resume replays; beyond it, as for --max-replay-messages' },
  { flag: 'history-limit', key: 'historyLimit', kind: 'int', default: 100, min: 1, max: 1_000_000, help: 'messages in a history answer (socket or GET /api/history) that gives no limit' },
  { flag: 'max-history-limit', key: 'maxHistoryLimit', kind: 'int', default: 1_000, min: 1, max: 1_000_000, help: 'largest limit a history request may ask for' },
  { flag: 'max-history-bytes', key: 'maxHistoryBytes', kind: 'bytes', default: 256 * KIB, min: 1, max: 256 * MIB, help: 'bytes of messages in one history answer (at least one message); the rest is behind its next cursor' },
  { flag: 'max-body-size', key: 'maxBodySize', kind: 'bytes', default: MIB, min: 1, max: 256 * MIB, help: 'largest HTTP API request body (413 above)' },
  { flag: 'shutdown-timeout', key: 'shutdownTimeout', kind: 'duration', default: 5_000, min: 0, help: 'on SIGTERM/SIGINT: time for closing handshakes before sockets are destroyed' },
  { flag: 'redis', key: 'redis', kind: 'url', schemes: ['redis', 'rediss'], default: undefined, help: 'Redis URL to run several hubs together', defaultText: 'none (one process)' },
  { flag: 'nats', key: 'nats', kind: 'url', schemes: ['nats', 'tls'], default: undefined, help: 'NATS URL to run several hubs together', defaultText: 'none (one process)' },
  { flag: 'broker-prefix', key: 'brokerPrefix', kind: 'string', default: 'wsengine', pattern: /^[A-Za-z0-9_-]{1,64}$/, patternText: '1 to 64 letters, digits, "_" or "-"', help: 'with --redis/--nats: prefix of every key, channel, subject and stream (deployments sharing a broker need different prefixes)' },
  { flag: 'node-heartbeat', key: 'nodeHeartbeat', kind: 'duration', default: 5_000, min: 100, help: 'with --redis/--nats: interval of this hub\'s liveness heartbeats on the broker' },
  { flag: 'node-ttl', key: 'nodeTtl', kind: 'duration', default: undefined, min: 200, defaultText: 'max(15s, 3 × --node-heartbeat)', help: 'with --redis/--nats: a hub without a heartbeat for this long is dead; its connections and presence stop counting and are removed (at least 2 × --node-heartbeat)' },
  { flag: 'tls-cert', key: 'tlsCert', kind: 'pem-file', default: undefined, help: 'PEM file with the TLS certificate (chain): with --tls-key, serve HTTPS with HTTP/2 and HTTP/1.1 on the port, WebSockets over both (RFC 8441 and the HTTP/1.1 upgrade)', defaultText: 'none: plain HTTP/1.1' },
  { flag: 'tls-key', key: 'tlsKey', kind: 'pem-file', default: undefined, help: 'PEM file with the TLS private key (with --tls-cert)' },
  { flag: 'dev', key: 'dev', kind: 'boolean', default: false, help: 'development mode: generated secret and API key, a token endpoint for the demo page' },
  { flag: 'config', key: 'config', kind: 'string', default: undefined, help: 'a JSON file with options by flag name, and the "permissions" and "hooks" sections; flags and environment variables win over it', defaultText: 'none' },
]);

/** Sections of the config file that have no flag. */
const FILE_SECTIONS = ['permissions', 'hooks'] as const;

/** The environment variable of a flag: `max-message-size` → `WSENGINE_MAX_MESSAGE_SIZE`. */
export function envName(flag: string): string {
  return `WSENGINE_${flag.toUpperCase().replaceAll('-', '_')}`;
}

const DURATION_UNITS: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: KIB, kb: KIB, kib: KIB, m: MIB, mb: MIB, mib: MIB, g: 1024 * MIB, gb: 1024 * MIB, gib: 1024 * MIB };

/** Parses `30s`, `250ms`, `5m`, `1h` or plain milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(text.trim());
  if (!match) return undefined;
  const value = Number(match[1]) * DURATION_UNITS[(match[2] ?? '').toLowerCase()];
  return Number.isFinite(value) ? Math.round(value) : undefined;
}

/** Parses `65536`, `64k`, `64KiB`, `1m`, `1MiB` (binary units); undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  if (!match) return undefined;
  const unit = SIZE_UNITS[match[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const value = Number(match[1]) * unit;
  return Number.isSafeInteger(Math.round(value)) ? Math.round(value) : undefined;
}

function describe(spec: OptionSpec): string {
  switch (spec.kind) {
    case 'port': return 'a port number from 0 to 65535';
    case 'int': return `an integer from ${spec.min ?? 0} to ${spec.max ?? Number.MAX_SAFE_INTEGER}`;
    case 'bytes': return `a size in bytes (65536, 64k, 1MiB) from ${spec.min ?? 0}${spec.max !== undefined ? ` to ${spec.max}` : ''}`;
    case 'duration': return `a duration in milliseconds or with a unit (250ms, 30s, 5m, 1h), at least ${spec.min ?? 0} ms`;
    case 'enum': return `one of ${spec.values!.join(', ')}`;
    case 'boolean': return 'true or false';
    case 'url': return `a URL (${spec.schemes!.map((s) => `${s}://`).join(' or ')})`;
    case 'list': return 'a comma-separated list of non-empty values';
    case 'pem-file': return 'a readable PEM file';
    default: return spec.patternText ?? 'a non-empty value';
  }
}

function convert(spec: OptionSpec, raw: string): unknown {
  const bad = (): never => {
    throw new ConfigError(`expected ${describe(spec)}, got ${JSON.stringify(spec.kind === 'secret' ? '…' : raw)}`);
  };
  const range = (n: number | undefined): number => {
    if (n === undefined || !Number.isFinite(n)) return bad();
    if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) return bad();
    return n;
  };
  switch (spec.kind) {
    case 'port': {
      if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) return bad();
      return Number(raw);
    }
    case 'int':
      return range(/^\d+$/.test(raw) ? Number(raw) : undefined);
    case 'bytes':
      return range(parseSize(raw));
    case 'duration':
      return range(parseDuration(raw));
    case 'boolean': {
      const v = raw.toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      return bad();
    }
    case 'enum':
      return spec.values!.includes(raw) ? raw : bad();
    case 'list': {
      const items = raw.split(',').map((s) => s.trim());
      return items.length > 0 && items.every((s) => s.length > 0) ? items : bad();
    }
    case 'url': {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return bad();
      }
      return spec.schemes!.includes(url.protocol.slice(0, -1)) ? raw : bad();
    }
    case 'pem-file': {
      let text: string;
      try {
        text = readFileSync(raw, 'utf8');
      } catch (error) {
        throw new ConfigError(`cannot read ${JSON.stringify(raw)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
      if (!text.includes('-----BEGIN ')) throw new ConfigError(`${JSON.stringify(raw)} is not a PEM file (no -----BEGIN line)`);
      return text;
    }
    default:
      return raw.length > 0 && (spec.pattern === undefined || spec.pattern.test(raw)) ? raw : bad();
  }
}

/** The command line and environment as {@link parseConfig} reads them. */
export interface ConfigInput {
  /** Arguments after the subcommand (`--port 9000 --dev`). */
  argv: readonly string[];
  /** Environment variables. Default: none. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** What the command line asked for: a configuration to run, or the help text. */
export type ParsedCommand = { help: true } | { help: false; config: ServiceConfig; /** Where each value came from. */ sources: Record<keyof ServiceConfig, 'flag' | 'env' | 'file' | 'default'> };

/** Reads a config file: its options as raw strings by flag, and its sections. ConfigError naming the file and key. */
function readConfigFile(path: string, byFlag: ReadonlyMap<string, OptionSpec>): { values: Map<OptionSpec, string>; sections: Record<string, unknown> } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`--config: cannot read ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`--config ${path}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(`--config ${path}: must hold one JSON object of options by flag name`);
  const values = new Map<OptionSpec, string>();
  const sections: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if ((FILE_SECTIONS as readonly string[]).includes(key)) {
      sections[key] = v;
      continue;
    }
    const spec = byFlag.get(key);
    if (spec === undefined || key === 'config') throw new ConfigError(`--config ${path}: unknown key ${JSON.stringify(key)} (options by flag name, as in --help, or ${FILE_SECTIONS.map((s) => JSON.stringify(s)).join(', ')})`);
    if (typeof v === 'number' || typeof v === 'boolean') values.set(spec, String(v));
    else if (typeof v === 'string') values.set(spec, v);
    else if (Array.isArray(v) && spec.kind === 'list' && v.every((x) => typeof x === 'string')) values.set(spec, v.join(','));
    else throw new ConfigError(`--config ${path}: "${key}" must be ${describe(spec)}${spec.kind === 'list' ? ' (or an array of strings)' : ''}`);
  }
  return { values, sections };
}

/**
 * Parses flags and environment variables against {@link OPTIONS}. Throws a {@link ConfigError} whose message is
 * one line naming the flag (and its variable when the value came from the environment).
 */
export function parseConfig(input: ConfigInput): ParsedCommand {
  const byFlag = new Map(OPTIONS.map((spec) => [spec.flag, spec]));
  const fromFlags = new Map<OptionSpec, string>();
  const argv = input.argv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return { help: true };
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}; flags start with -- (see --help)`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const spec = byFlag.get(name);
    if (!spec) throw new ConfigError(`--${name}: unknown flag (see --help)`);
    if (fromFlags.has(spec)) throw new ConfigError(`--${name}: given twice`);
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (spec.kind === 'boolean') value = 'true';
    else {
      if (i + 1 >= argv.length || argv[i + 1].startsWith('--')) throw new ConfigError(`--${name}: missing value (${describe(spec)})`);
      value = argv[++i];
    }
    fromFlags.set(spec, value);
  }
  const env = input.env ?? {};
  const configSpec = byFlag.get('config')!;
  const configPath = fromFlags.get(configSpec) ?? (env[envName('config')] || undefined);
  const file = configPath === undefined ? null : readConfigFile(configPath, byFlag);
  const config = {} as Record<string, unknown>;
  const sources = {} as Record<string, 'flag' | 'env' | 'file' | 'default'>;
  for (const spec of OPTIONS) {
    const flagValue = fromFlags.get(spec);
    const envValue = env[envName(spec.flag)];
    const fileValue = file?.values.get(spec);
    const fromEnv = envValue !== undefined && envValue !== '' ? envValue : undefined;
    const raw = flagValue ?? fromEnv ?? fileValue;
    const where = flagValue !== undefined ? `--${spec.flag}` : fromEnv !== undefined ? `${envName(spec.flag)} (--${spec.flag})` : `"${spec.flag}" in ${configPath}`;
    if (raw === undefined) {
      config[spec.key] = spec.default;
      sources[spec.key] = 'default';
      continue;
    }
    try {
      config[spec.key] = convert(spec, raw);
    } catch (error) {
      throw new ConfigError(`${where}: ${(error as Error).message}`);
    }
    sources[spec.key] = flagValue !== undefined ? 'flag' : fromEnv !== undefined ? 'env' : 'file';
  }
  if (file?.sections.permissions !== undefined) {
    try {
      new Permissions(file.sections.permissions as PermissionOptions);
    } catch (error) {
      throw new ConfigError(`--config ${configPath}: ${(error as Error).message}`);
    }
  }
  config.permissions = file?.sections.permissions;
  sources.permissions = file?.sections.permissions === undefined ? 'default' : 'file';
  let hooks: ReturnType<typeof parseHooks>;
  try {
    hooks = parseHooks(file?.sections.hooks);
  } catch (error) {
    throw new ConfigError(`--config ${configPath}: ${(error as Error).message}`);
  }
  config.hooks = file?.sections.hooks;
  sources.hooks = file?.sections.hooks === undefined ? 'default' : 'file';
  const result = config as unknown as ServiceConfig;
  checkCombination(result, hooks?.connect !== undefined);
  return { help: false, config: result, sources: sources as Record<keyof ServiceConfig, 'flag' | 'env' | 'file' | 'default'> };
}

/** Rules across options. `connectHook`: the config file has a connect hook (then no JWT key is needed). */
function checkCombination(config: ServiceConfig, connectHook = false): void {
  if (config.jwtSecret !== undefined && config.jwtPublicKey !== undefined) {
    throw new ConfigError('--jwt-secret and --jwt-public-key: give one of them, not both');
  }
  if (config.jwtSecret === undefined && config.jwtPublicKey === undefined && !config.dev && !connectHook) {
    throw new ConfigError('--jwt-secret or --jwt-public-key is required to verify tokens (or a connect hook in --config, or --dev for a development setup)');
  }
  if (config.jwtSecret !== undefined && config.jwtSecret.length < 32 && !config.dev) {
    throw new ConfigError('--jwt-secret: too short, use at least 32 characters (e.g. openssl rand -base64 32)');
  }
  if (config.heartbeatTimeout <= config.heartbeatInterval) {
    throw new ConfigError(`--heartbeat-timeout: must be longer than --heartbeat-interval (${config.heartbeatInterval} ms), got ${config.heartbeatTimeout} ms`);
  }
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new ConfigError(config.tlsCert === undefined ? '--tls-key: give --tls-cert too (the certificate of that key)' : '--tls-cert: give --tls-key too (the private key of that certificate)');
  }
  if (config.redis !== undefined && config.nats !== undefined) {
    throw new ConfigError('--redis and --nats: choose one broker');
  }
  if (config.nodeTtl !== undefined && config.nodeTtl < 2 * config.nodeHeartbeat) {
    throw new ConfigError(`--node-ttl: must be at least 2 × --node-heartbeat (${2 * config.nodeHeartbeat} ms), got ${config.nodeTtl} ms`);
  }
}

function formatDefault(spec: OptionSpec): string {
  if (spec.defaultText !== undefined) return spec.defaultText;
  const value = spec.default;
  if (value === undefined) return 'none';
  if (spec.kind === 'duration') return formatDuration(value as number);
  if (spec.kind === 'bytes') return formatSize(value as number);
  return String(value);
}

/** `30000` → `30s`, `300000` → `5m`, `250` → `250ms`. */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** `65536` → `64KiB`, `1048576` → `1MiB`. */
export function formatSize(bytes: number): string {
  if (bytes >= MIB && bytes % MIB === 0) return `${bytes / MIB}MiB`;
  if (bytes >= KIB && bytes % KIB === 0) return `${bytes / KIB}KiB`;
  return `${bytes}`;
}

/** The `--help` text: every flag with its variable, meaning and default. */
export function helpText(): string {
  const lines = [
    'Usage: wsengine hub [flags]',
    '',
    'Runs the pub/sub hub: WebSocket endpoints on / and /ws, the HTTP API under /api, /health and /metrics.',
    'Every flag can also be set by its environment variable; a flag wins over the variable.',
    'Durations: milliseconds or 250ms, 30s, 5m, 1h. Sizes: bytes or 64k, 64KiB, 1MiB.',
    '',
    'Flags:',
  ];
  for (const spec of OPTIONS) {
    const value = spec.kind === 'boolean' ? '' : spec.kind === 'enum' ? ` <${spec.values!.join('|')}>` : ` <${spec.kind === 'pem-file' ? 'file' : spec.kind === 'secret' ? 'string' : spec.kind}>`;
    lines.push(`  --${spec.flag}${value}`);
    lines.push(`      ${spec.help}. Default: ${formatDefault(spec)}. Env: ${envName(spec.flag)}`);
  }
  lines.push('  --help', '      this text', '', 'Exit status: 0 after a graceful shutdown (SIGTERM, SIGINT), 2 for a bad configuration, 1 on a start-up failure.');
  return lines.join('\n');
}

/**
 * The configuration as one log line, secrets left out (`jwt=HS(secret)`, `api_key=set`): safe to log.
 */
export function configSummary(config: ServiceConfig): string {
  const parts: string[] = [];
  for (const spec of OPTIONS) {
    const value = config[spec.key];
    let text: string;
    if (spec.kind === 'secret' || spec.kind === 'pem-file') text = value === undefined ? 'unset' : 'set';
    else if (value === undefined) text = 'unset';
    else if (spec.kind === 'duration') text = formatDuration(value as number);
    else if (spec.kind === 'bytes') text = formatSize(value as number);
    else if (spec.kind === 'url') text = redactUrl(value as string);
    else if (Array.isArray(value)) text = value.join(',');
    else text = String(value);
    parts.push(`${spec.flag}=${text}`);
  }
  return parts.join(' ');
}

/** A URL without its password (`redis://user:secret@h` → `redis://user:***@h`). */
function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'set';
  }
}
