/**
 * The hub's wire protocol: parsing and validating what clients send, in every dialect the hub understands, and
 * encoding the replies in the shape the client used.
 *
 * - native: JSON envelopes `{"type", "data", "request_id"}` (seeds 001 and 002, and the hub client);
 * - `llps`: the seed 000 shape `{"action", "tenant", "channel", "payload"}`;
 * - text `ping` (seed 003) answered with text `pong`.
 *
 * Parsing never throws: every input yields a request or an {@link InvalidRequest} with a readable message.
 *
 * @module
 */
import type { PublishedMessage } from './history.js';

/** The dialect a request was written in; replies use the same. */
export type Dialect = 'native' | 'llps';

/** Error codes of error replies. */
export type ErrorCode = 'invalid_request' | 'unauthorized' | 'subscription_failed' | 'rate_limited' | 'internal_error';

/** A request id as clients send it (echoed back verbatim). */
export type RequestId = string | number | null;

/** Defaults of the protocol's own limits. */
export const PROTOCOL_LIMITS = {
  /** Longest string `request_id`, in characters. */
  maxRequestIdLength: 128,
  /** Longest message `type`, in characters. */
  maxTypeLength: 128,
  /** Longest token in `auth`/`refresh`, in characters. */
  maxTokenLength: 16_384,
} as const;

interface Base {
  dialect: Dialect;
  requestId: RequestId | undefined;
}

/** A parsed request. `topic` and `tenant` are only type-checked here; the hub validates names and permissions. */
export type HubRequest =
  | (Base & { kind: 'subscribe'; topic: unknown; tenant: unknown; since: unknown; presence: boolean; token: unknown })
  | (Base & { kind: 'unsubscribe'; topic: unknown; tenant: unknown })
  | (Base & { kind: 'publish'; topic: unknown; tenant: unknown; type: string; data: unknown })
  | (Base & { kind: 'ping' })
  | (Base & { kind: 'pong' })
  | (Base & { kind: 'auth'; token: string })
  | (Base & { kind: 'refresh'; token: string })
  | (Base & { kind: 'presence'; topic: unknown; tenant: unknown })
  | (Base & { kind: 'history'; topic: unknown; tenant: unknown; since: unknown; limit: unknown; cursor: unknown; token: unknown })
  | (Base & { kind: 'app'; type: string; data: unknown; envelope: Record<string, unknown> });

/** A message that could not be understood: reply with `invalid_request` and this message. */
export interface InvalidRequest {
  kind: 'invalid';
  dialect: Dialect;
  requestId: RequestId | undefined;
  code: ErrorCode;
  message: string;
}

function invalid(message: string, dialect: Dialect = 'native', requestId?: RequestId): InvalidRequest {
  return { kind: 'invalid', dialect, requestId, code: 'invalid_request', message };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function own(o: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

/** Parses a JSON text message (the caller has already handled the bare `ping` text). */
export function parseRequest(text: string): HubRequest | InvalidRequest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof RangeError ? 'nested too deeply' : 'not valid JSON';
    return invalid(`message is ${detail}: expected {"type": string, "data": object, "request_id"?: string | number}`);
  }
  if (!isObject(value)) return invalid(`message must be a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`);
  if (Object.hasOwn(value, 'action') && !Object.hasOwn(value, 'type')) return parseLlps(value);
  return parseNative(value);
}

function readRequestId(o: Record<string, unknown>): RequestId | undefined | InvalidRequest {
  const id = own(o, 'request_id');
  if (id === undefined || id === null) return id as undefined | null;
  if (typeof id === 'string') {
    if (id.length > PROTOCOL_LIMITS.maxRequestIdLength) return invalid(`request_id is longer than ${PROTOCOL_LIMITS.maxRequestIdLength} characters`);
    return id;
  }
  if (typeof id === 'number' && Number.isFinite(id)) return id;
  return invalid('request_id must be a string, a finite number or null');
}

function parseNative(o: Record<string, unknown>): HubRequest | InvalidRequest {
  const requestId = readRequestId(o);
  if (isInvalid(requestId)) return requestId;
  const type = own(o, 'type');
  if (typeof type !== 'string' || type.length === 0) return invalid('"type" must be a non-empty string', 'native', requestId);
  if (type.length > PROTOCOL_LIMITS.maxTypeLength) return invalid(`"type" is longer than ${PROTOCOL_LIMITS.maxTypeLength} characters`, 'native', requestId);
  const rawData = own(o, 'data');
  const dialect = 'native';
  switch (type) {
    case 'ping':
      return { kind: 'ping', dialect, requestId };
    case 'pong':
      return { kind: 'pong', dialect, requestId };
    case 'auth':
    case 'refresh': {
      const token = own(o, 'token') ?? (isObject(rawData) ? own(rawData, 'token') : undefined);
      if (typeof token !== 'string' || token.length === 0) return invalid(`${type} needs a non-empty string "token" (or data.token)`, dialect, requestId);
      if (token.length > PROTOCOL_LIMITS.maxTokenLength) return invalid(`token is longer than ${PROTOCOL_LIMITS.maxTokenLength} characters`, dialect, requestId);
      return { kind: type, dialect, requestId, token };
    }
    case 'subscribe':
    case 'unsubscribe':
    case 'presence':
    case 'history':
    case 'publish': {
      if (!isObject(rawData)) return invalid(`${type} needs "data" to be an object`, dialect, requestId);
      const topic = own(rawData, 'topic') ?? own(rawData, 'channel');
      const tenant = own(rawData, 'tenant');
      if (type === 'subscribe') return { kind: 'subscribe', dialect, requestId, topic, tenant, since: own(rawData, 'since'), presence: own(rawData, 'presence') === true, token: own(rawData, 'token') };
      if (type === 'unsubscribe') return { kind: 'unsubscribe', dialect, requestId, topic, tenant };
      if (type === 'presence') return { kind: 'presence', dialect, requestId, topic, tenant };
      if (type === 'history') return { kind: 'history', dialect, requestId, topic, tenant, since: own(rawData, 'since'), limit: own(rawData, 'limit'), cursor: own(rawData, 'cursor'), token: own(rawData, 'token') };
      const messageType = own(rawData, 'type') ?? 'message';
      if (typeof messageType !== 'string' || messageType.length === 0 || messageType.length > PROTOCOL_LIMITS.maxTypeLength) {
        return invalid(`publish needs data.type to be a non-empty string of at most ${PROTOCOL_LIMITS.maxTypeLength} characters`, dialect, requestId);
      }
      if (!Object.hasOwn(rawData, 'data')) return invalid('publish needs data.data (the message to publish)', dialect, requestId);
      return { kind: 'publish', dialect, requestId, topic, tenant, type: messageType, data: rawData.data };
    }
    default:
      return { kind: 'app', dialect, requestId, type, data: rawData, envelope: o };
  }
}

function parseLlps(o: Record<string, unknown>): HubRequest | InvalidRequest {
  const requestId = readRequestId(o);
  if (isInvalid(requestId)) return { ...requestId, dialect: 'llps' };
  const action = own(o, 'action');
  const dialect = 'llps';
  const topic = own(o, 'channel') ?? own(o, 'topic');
  const tenant = own(o, 'tenant');
  switch (action) {
    case 'subscribe':
      return { kind: 'subscribe', dialect, requestId, topic, tenant, since: own(o, 'since'), presence: own(o, 'presence') === true, token: own(o, 'token') };
    case 'unsubscribe':
      return { kind: 'unsubscribe', dialect, requestId, topic, tenant };
    case 'publish':
      if (!Object.hasOwn(o, 'payload')) return invalid('publish needs a "payload"', dialect, requestId);
      return { kind: 'publish', dialect, requestId, topic, tenant, type: 'message', data: o.payload };
    case 'ping':
      return { kind: 'ping', dialect, requestId };
    case 'pong':
      return { kind: 'pong', dialect, requestId };
    default:
      return invalid(`unknown action ${typeof action === 'string' ? JSON.stringify(action.slice(0, 64)) : `of type ${typeof action}`} (expected subscribe, unsubscribe, publish or ping)`, dialect, requestId);
  }
}

function isInvalid(v: unknown): v is InvalidRequest {
  return typeof v === 'object' && v !== null && (v as InvalidRequest).kind === 'invalid';
}

function idPart(requestId: RequestId | undefined): string {
  return requestId === undefined ? '' : `,"request_id":${JSON.stringify(requestId)}`;
}

/** An acknowledgement: native `{"type":"ack","request_id",data?}`; llps `{"action":"ack", …data}`. */
export function encodeAck(dialect: Dialect, requestId: RequestId | undefined, data?: Record<string, unknown>, llpsAction = 'ack'): string {
  if (dialect === 'llps') {
    const fields = data === undefined ? '' : JSON.stringify(data).slice(1, -1);
    return `{"action":${JSON.stringify(llpsAction)}${fields === '' ? '' : `,${fields}`}${idPart(requestId)}}`;
  }
  return `{"type":"ack"${idPart(requestId === undefined ? null : requestId)}${data === undefined ? '' : `,"data":${JSON.stringify(data)}`}}`;
}

/** An error reply: native `{"type":"error","data":{"code","message"},"request_id"}`; llps `{"action":"error","code","message"}`. */
export function encodeError(dialect: Dialect, code: ErrorCode, message: string, requestId: RequestId | undefined): string {
  if (dialect === 'llps') return `{"action":"error","code":"${code}","message":${JSON.stringify(message)}${idPart(requestId)}}`;
  return `{"type":"error","data":{"code":"${code}","message":${JSON.stringify(message)}},"request_id":${JSON.stringify(requestId ?? null)}}`;
}

/** A topic message: native `{"type","data","topic","tenant","seq","epoch","ts"}`; llps `{"action":"message","tenant","channel","type","payload","seq","epoch","ts"}`. */
export function encodeTopicMessage(dialect: Dialect, m: PublishedMessage): string {
  const tail = `,"seq":${m.seq},"epoch":${JSON.stringify(m.epoch)},"ts":${m.ts}${m.from === undefined ? '' : `,"from":{"user":${JSON.stringify(m.from)}}`}}`;
  if (dialect === 'llps') return `{"action":"message","tenant":${JSON.stringify(m.tenant)},"channel":${JSON.stringify(m.topic)},"type":${JSON.stringify(m.type)},"payload":${m.data}${tail}`;
  return `{"type":${JSON.stringify(m.type)},"data":${m.data},"topic":${JSON.stringify(m.topic)},"tenant":${JSON.stringify(m.tenant)}${tail}`;
}

/** A message without a sequence number (to a user, a connection, everyone): native `{"type","data"}`; llps `{"action":"message","type","payload"}`. */
export function encodeDirect(dialect: Dialect, type: string, data: string): string {
  if (dialect === 'llps') return `{"action":"message","type":${JSON.stringify(type)},"payload":${data}}`;
  return `{"type":${JSON.stringify(type)},"data":${data}}`;
}

/**
 * A gap report: the seq range `from`..`to` (inclusive) of `topic` in `epoch` will not be delivered (`to` =
 * `Number.MAX_SAFE_INTEGER` when the epoch was lost and its end is unknown). Native
 * `{"type":"gap","data":{"topic","tenant","epoch","from","to"}}`; llps `{"action":"gap","channel",…same fields}`.
 */
export function encodeGap(dialect: Dialect, g: { tenant: string; topic: string; epoch: string; from: number; to: number }): string {
  const fields = `"topic":${JSON.stringify(g.topic)},"tenant":${JSON.stringify(g.tenant)},"epoch":${JSON.stringify(g.epoch)},"from":${g.from},"to":${g.to}`;
  if (dialect === 'llps') return `{"action":"gap","channel":${JSON.stringify(g.topic)},${fields}}`;
  return `{"type":"gap","data":{${fields}}}`;
}

/**
 * A `history` answer: the ack with its fields (`data`: topic, tenant, position, `recovered`, `gaps`, `more`, `next`)
 * and the messages, each as a subscriber gets it: native `{"type":"ack",…,"data":{…},"messages":[…]}`; llps
 * `{"action":"history",…fields,"messages":[…]}`. The messages are spliced in as encoded, never re-serialized.
 */
export function encodeHistory(dialect: Dialect, requestId: RequestId | undefined, data: Record<string, unknown>, messages: readonly PublishedMessage[]): string {
  const ack = encodeAck(dialect, requestId, data, 'history');
  let list = '';
  for (let i = 0; i < messages.length; i++) list += (i === 0 ? '' : ',') + encodeTopicMessage(dialect, messages[i]);
  return `${ack.slice(0, -1)},"messages":[${list}]}`;
}

/** At most 120 bytes of `text` (a close reason may hold 123), cut on a character boundary. */
export function truncateReason(text: string): string {
  if (Buffer.byteLength(text) <= 120) return text;
  let out = '';
  for (const ch of text) {
    if (Buffer.byteLength(out + ch) > 120) break;
    out += ch;
  }
  return out;
}

/** The hub's application-level ping (seed 001): `{"type":"ping","data":{},"request_id":null}`. */
export const APP_PING = '{"type":"ping","data":{},"request_id":null}';

/** Serializes application data to JSON text; throws a TypeError naming what cannot be serialized. */
export function serializeData(data: unknown, what = 'data'): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (error) {
    throw new TypeError(`${what} cannot be serialized as JSON: ${(error as Error).message}`);
  }
  if (text === undefined) throw new TypeError(`${what} must be JSON-serializable (got ${typeof data})`);
  return text;
}
