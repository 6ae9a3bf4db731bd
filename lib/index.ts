/**
 * wsengine: a zero-dependency RFC 6455 WebSocket engine for Node.js.
 *
 * - `createServer` / `WebSocketServer`: a standalone server (ws or wss), or `handleUpgrade` on an HTTP server.
 * - `connect`: the client; `WebSocket`: the browser API on top of it.
 * - `prepare`: frame a message once for many connections.
 * - `perMessageDeflate` (RFC 7692) on servers and clients: `DeflateOptions`, `DEFLATE_DEFAULTS`.
 * - `./core` (also re-exported here): the sans-I/O protocol engine.
 *
 * @module
 */
export * from './core/index.js';
export {
  acceptKey,
  acceptResponse,
  checkUpgradeRequest,
  checkUpgradeResponse,
  generateKey,
  httpResponse,
  isRefusal,
  isValidKey,
  statusText,
  upgradeRequest,
  WEBSOCKET_GUID,
  type HttpRefusal,
  type UpgradeCheckOptions,
  type UpgradeRequest,
  type UpgradeRequestOptions,
  type UpgradeResponse,
} from './core/handshake.js';
export { HEAD_DEFAULTS, HeadError, HeadParser, parseHead, type HeadLimits, type HttpHead } from './core/http1.js';
export { formatExtensions, parseExtensions, parseProtocols, type ExtensionOffer } from './core/tokens.js';
export {
  CONNECTION_DEFAULTS,
  WebSocketConnection,
  type ConnectionEvents,
  type ConnectionOptions,
  type Message,
  type SendOptions,
} from './transport/connection.js';
export {
  createServer,
  SERVER_DEFAULTS,
  WebSocketServer,
  type AuthAcceptance,
  type AuthRejection,
  type HttpAnswer,
  type IncomingUpgrade,
  type ServerEvents,
  type ServerOptions,
  type ServerStats,
  type ShutdownOptions,
  type UpgradeSocket,
} from './transport/server.js';
export { CLIENT_DEFAULTS, connect, HandshakeError, redirectHeaders, type ClientOptions } from './transport/client.js';
export { CloseEvent, WebSocket } from './transport/websocket.js';
export { HTTP2_DEFAULTS, type Http2ServerOptions, isWebSocketConnect } from './transport/http2.js';
export { READ_PATH_FALLBACK_WARNING } from './transport/reads.js';
export { WRITE_PATH_FALLBACK_WARNING } from './transport/writes.js';
export { ACCEPT_PATH_FALLBACK_WARNING } from './transport/handle-socket.js';
export { prepare, type PreparedMessage, type PrepareOptions } from './transport/prepared.js';
export { DEFLATE_DEFAULTS, type DeflateOptions, type DeflateParams } from './deflate/negotiate.js';
export { Heartbeat, HEARTBEAT_DEFAULTS, type HeartbeatOptions } from './transport/heartbeat.js';
