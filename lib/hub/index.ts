/**
 * `wsengine/hub`: the pub/sub hub on top of the engine — topics with `*`/`#` wildcards, tenants, delivery to
 * topics, users, connections and everyone, authentication (JWT built in), heartbeats, limits, sequence numbers
 * with bounded history and exact resume, presence, and a {@link Backplane} for running several hubs.
 *
 * @module
 */
export {
  ATTACH_BACKOFF,
  BackplaneUnavailableError,
  createHub,
  Hub,
  HubClient,
  HUB_CLOSE_CODES,
  HUB_HEARTBEAT_DEFAULTS,
  HUB_LIMIT_DEFAULTS,
  type AuthorizationRequest,
  type AuthorizeDecision,
  type BackplaneState,
  type ClientMessage,
  type HubAuthorize,
  type HubCloseOptions,
  type HubEvents,
  type HubHealth,
  type HubHeartbeatOptions,
  type HubLimits,
  type HubRate,
  type HubRefusal,
  type HubRefusalReason,
  type HubOptions,
  type HubStats,
  type OutgoingMessage,
  type PublishMessage,
  type SlowConsumerInfo,
  type SlowConsumerPolicy,
  type SubscribeResult,
  type UpgradeRefusal,
} from './hub.js';
export {
  historySweepInterval,
  MemoryBackplane,
  type Backplane,
  type BackplaneSink,
  type DisconnectTarget,
  type HubEnvelope,
  type MemoryBackplaneOptions,
  type PresenceEvent,
  type PresenceSnapshot,
  type ResumeAnswer,
} from './backplane.js';
export {
  GAP_UNKNOWN_END,
  HISTORY_DEFAULTS,
  HISTORY_ENTRY_OVERHEAD,
  historyEntryBytes,
  HistoryStore,
  newEpoch,
  type Gap,
  type HistoryOptions,
  type PatternSince,
  type PublishedMessage,
  type ResumeResult,
  type StreamPosition,
} from './history.js';
export { checkTopic, isPattern, matches, normalizePattern, TOPIC_DEFAULTS, TopicTrie, type TopicLimits } from './topics.js';
export {
  APP_PING,
  encodeAck,
  encodeDirect,
  encodeError,
  encodeGap,
  encodeTopicMessage,
  parseRequest,
  PROTOCOL_LIMITS,
  serializeData,
  type Dialect,
  type ErrorCode,
  type HubRequest,
  type InvalidRequest,
  type RequestId,
} from './protocol.js';
export { TimerQueue, type Deadline } from './timers.js';
export { covers, overlaps, PERMISSION_DEFAULTS, Permissions, type Action, type Asker, type PermissionOptions, type TopicRule, type Who } from './permissions.js';
export { type HistoryPage } from './resume.js';
export { Histogram, LATENCY_BOUNDS, type HistogramSnapshot } from './histogram.js';
export * from './auth.js';
export * from './jwt.js';
