/**
 * What the Redis and NATS backplanes send between nodes, as text: topic messages (a JSON header line with the
 * stream fields, then the data's JSON text, unchanged) and control messages (to a user, a connection, everyone, a
 * disconnect, a presence event, a node probe), with decoders that reject whatever is not one (foreign traffic on the prefix).
 *
 * Internal to the hub, not a package entry point. Not tagged internal here: in a file's first comment the tag
 * attaches to the first statement, which `stripInternal` then drops from the declarations.
 *
 * @module
 */
import type { DisconnectTarget, HubEnvelope, PresenceEvent } from './backplane.js';
import type { PublishedMessage } from './resume-rules.js';

/** A held message and the tenant offset of its predecessor in the topic (0 for seq 1). */
export interface HeldMessage {
  message: PublishedMessage;
  prev: number;
}

/** A message between nodes that is not a topic message (user, connection, broadcast, disconnect, presence, probes). */
export type ControlMessage =
  | { k: 'user'; user: string; env: HubEnvelope }
  | { k: 'conn'; id: string; env: HubEnvelope }
  | { k: 'bcast'; tenant?: string; env: HubEnvelope }
  | { k: 'disc'; target: DisconnectTarget; code: number; reason: string }
  | { k: 'pres'; event: PresenceEvent }
  /** Are you there? (answered with a `pong` carrying the same nonce, to the sending node) */
  | { k: 'ping'; n: string }
  | { k: 'pong'; n: string };

/** Serializes a topic message for the wire between nodes: a JSON header line, then the data's JSON text. */
export function encodeMessage(m: PublishedMessage, prev: number, start: number): string {
  const head = [m.tenant, m.topic, m.type, m.epoch, m.seq, m.ts, m.offset, prev, start];
  if (m.from !== undefined) head.push(m.from);
  return JSON.stringify(head) + '\n' + m.data;
}

/** Inverse of {@link encodeMessage}; null when the text is not one (foreign traffic on our prefix). */
export function decodeMessage(text: string): HeldMessage & { start: number } | null {
  const nl = text.indexOf('\n');
  if (nl < 0) return null;
  let h: unknown;
  try {
    h = JSON.parse(text.slice(0, nl));
  } catch {
    return null;
  }
  if (!Array.isArray(h) || (h.length !== 9 && h.length !== 10)) return null;
  const [tenant, topic, type, epoch, seq, ts, offset, prev, start, from] = h as unknown[];
  if (from !== undefined && typeof from !== 'string') return null;
  if (typeof tenant !== 'string' || typeof topic !== 'string' || typeof type !== 'string' || typeof epoch !== 'string') return null;
  if (!isCount(seq) || !isCount(ts) || !isCount(offset) || !isCount(prev) || !isCount(start)) return null;
  const message: HeldMessage['message'] = { tenant, topic, type, data: text.slice(nl + 1), seq, epoch, ts, offset };
  if (from !== undefined) message.from = from;
  return { message, prev, start };
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Encodes a control message. */
export function encodeControl(from: string, message: ControlMessage): string {
  return JSON.stringify({ from, ...message });
}

/** Decodes a control message; null when malformed. Returns the sending node's id too. */
export function decodeControl(text: string): { from: string; message: ControlMessage } | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o.from !== 'string' || typeof o.k !== 'string') return null;
  const env = o.env as HubEnvelope | undefined;
  const envOk = env !== undefined && env !== null && typeof env.type === 'string' && typeof env.data === 'string';
  switch (o.k) {
    case 'user': if (typeof o.user === 'string' && envOk) return { from: o.from, message: { k: 'user', user: o.user, env: env! } }; break;
    case 'conn': if (typeof o.id === 'string' && envOk) return { from: o.from, message: { k: 'conn', id: o.id, env: env! } }; break;
    case 'bcast': if ((o.tenant === undefined || typeof o.tenant === 'string') && envOk) return { from: o.from, message: { k: 'bcast', tenant: o.tenant as string | undefined, env: env! } }; break;
    case 'disc': {
      const t = o.target as Record<string, unknown> | null;
      const target = t !== null && typeof t === 'object' ? (typeof t.connectionId === 'string' ? { connectionId: t.connectionId } : typeof t.user === 'string' ? { user: t.user } : null) : null;
      if (target !== null && typeof o.code === 'number' && typeof o.reason === 'string') return { from: o.from, message: { k: 'disc', target, code: o.code, reason: o.reason } };
      break;
    }
    case 'ping':
    case 'pong': if (typeof o.n === 'string') return { from: o.from, message: { k: o.k, n: o.n } }; break;
    case 'pres': {
      const e = o.event as Record<string, unknown> | null;
      if (e !== null && typeof e === 'object' && (e.kind === 'join' || e.kind === 'leave') && typeof e.tenant === 'string' && typeof e.topic === 'string' && typeof e.user === 'string') {
        return { from: o.from, message: { k: 'pres', event: { kind: e.kind, tenant: e.tenant, topic: e.topic, user: e.user } } };
      }
      break;
    }
  }
  return null;
}
