/**
 * The hub's {@link BackplaneSink}: what arrives from the backplane (topic messages, user, connection and broadcast
 * messages, disconnect requests, presence changes, loss reports) is matched against the {@link Registry} and handed
 * to {@link Delivery}, the hub's one writer.
 *
 * @module
 */
import type { BackplaneSink, DisconnectTarget, PresenceEvent } from './backplane.js';
import { type HubClient, STATE_OPEN, type Subscription } from './client.js';
import type { Delivery, DirectFrames } from './delivery.js';
import type { Gap, PublishedMessage } from './history.js';
import { encodeDirect, serializeData } from './protocol.js';
import type { Registry } from './registry.js';

/** What the sink needs of the hub besides the registry and delivery. */
export interface SinkHost {
  /** Closes a client with a code the hub chose. */
  close(client: HubClient, code: number, reason: string): void;
  /** A presence change, for the hub's `presence` event. */
  presence(event: PresenceEvent): void;
}

/** The sink a hub attaches to its backplane. */
export function createSink(registry: Registry, delivery: Delivery, host: SinkHost): BackplaneSink {
  const scratch: Array<ReadonlySet<Subscription>> = [];
  return {
    message: (m: PublishedMessage) => {
      registry.match(m.tenant, m.topic, scratch);
      if (scratch.length === 0) return;
      try {
        delivery.publish(m, scratch);
      } finally {
        scratch.length = 0;
      }
    },
    user: (user, message) => {
      let n = 0;
      const frames: DirectFrames = {};
      for (const client of registry.ofUser(user)) if (delivery.direct(client, message, frames)) n++;
      return n;
    },
    connection: (id, message) => {
      const client = registry.clients.get(id);
      return client !== undefined && delivery.direct(client, message, null);
    },
    broadcast: (message, tenant) => {
      let n = 0;
      const frames: DirectFrames = {};
      for (const client of registry.open(tenant)) if (delivery.direct(client, message, frames)) n++;
      return n;
    },
    disconnect: (target: DisconnectTarget, code, reason) => {
      const list = 'user' in target ? registry.ofUser(target.user) : [registry.clients.get(target.connectionId)].filter((c) => c !== undefined);
      for (const client of list) host.close(client, code, reason);
      return list.length;
    },
    presence: (event) => {
      host.presence(event);
      presenceEvent(registry, delivery, event);
    },
    gap: (gap) => backplaneGap(registry, delivery, gap),
  };
}

/**
 * A loss reported by the backplane: one `gap` frame per dialect, sent to every connection with a live
 * subscription matching the topic (once per connection, however many of its patterns match). Subscriptions
 * still being set up (or replaying) keep it in their buffer, in order with the messages.
 */
function backplaneGap(registry: Registry, delivery: Delivery, gap: Gap): void {
  if (typeof gap !== 'object' || gap === null || typeof gap.topic !== 'string' || typeof gap.tenant !== 'string') return;
  const sets: Array<ReadonlySet<Subscription>> = [];
  registry.match(gap.tenant, gap.topic, sets);
  // Per connection, one subscription: a live one when there is one.
  const chosen = new Map<HubClient, Subscription>();
  for (const set of sets) {
    for (const sub of set) {
      if (sub.filter !== null && !sub.filter(gap.topic)) continue;
      const held = chosen.get(sub.client);
      if (held === undefined || (held.buffer !== null && sub.buffer === null)) chosen.set(sub.client, sub);
    }
  }
  for (const [client, sub] of chosen) {
    if (sub.buffer !== null) delivery.hold(sub, gap);
    else if (client.state === STATE_OPEN) delivery.gap(client, sub.dialect, gap);
  }
}

/** `join`/`leave` to the live subscriptions that asked for presence (not to the user concerned). */
function presenceEvent(registry: Registry, delivery: Delivery, event: PresenceEvent): void {
  const subs = registry.exact(event.tenant, event.topic);
  if (subs === undefined) return;
  const data = serializeData({ tenant: event.tenant, topic: event.topic, user: event.user });
  for (const sub of subs) {
    if (!sub.presence || sub.buffer !== null || sub.client.user === event.user) continue;
    delivery.reply(sub.client, sub.dialect === 'llps' ? `{"action":${JSON.stringify(event.kind)},"channel":${JSON.stringify(event.topic)},"tenant":${JSON.stringify(event.tenant)},"user":${JSON.stringify(event.user)}}` : encodeDirect('native', event.kind, data));
  }
}
