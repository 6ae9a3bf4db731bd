/**
 * `wsengine/ws`: ws 8's API on the engine, for code written against ws. Switch with one line:
 *
 * ```ts
 * import { WebSocketServer, WebSocket } from 'wsengine/ws'; // was: from 'ws'
 * ```
 *
 * `WebSocketServer` (alias `Server`), `WebSocket` (the EventEmitter client, and what `connection` listeners get) and
 * `createWebSocketStream`, with ws's options, events, properties, constants and callback semantics. The default
 * export, and `require('wsengine/ws')`, is the `WebSocket` class carrying the others as properties, as ws's is.
 * Differences from ws are listed in the README ("Switch in one line").
 *
 * @module
 */
import { CloseEvent, ErrorEvent, Event, MessageEvent } from './events.js';
import { WebSocketServer } from './server.js';
import { createWebSocketStream } from './stream.js';
import { WebSocket } from './websocket.js';

export type { EventListenerLike } from './events.js';
export type { ServerOptions, VerifyClientCallback, VerifyClientInfo } from './server.js';
export type { BinaryType, ClientOptions, RawData, Sendable, WsSendOptions } from './websocket.js';
export type { PerMessageDeflateOptions } from './options.js';

/** ws's CommonJS shape: the class carries the rest (`WebSocket.Server`, `WebSocket.createWebSocketStream`, …). */
interface WebSocketStatics {
  WebSocket: typeof WebSocket;
  WebSocketServer: typeof WebSocketServer;
  Server: typeof WebSocketServer;
  createWebSocketStream: typeof createWebSocketStream;
}
for (const [name, value] of Object.entries({ WebSocket, WebSocketServer, Server: WebSocketServer, createWebSocketStream } satisfies WebSocketStatics)) {
  Object.defineProperty(WebSocket, name, { value, enumerable: true, writable: true, configurable: true });
}
// The browser-style event classes, for `require('wsengine/ws')` users too (not enumerable: ws's export has none).
for (const [name, value] of Object.entries({ Event, CloseEvent, ErrorEvent, MessageEvent })) {
  Object.defineProperty(WebSocket, name, { value, enumerable: false, writable: true, configurable: true });
}

declare module './websocket.js' {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace WebSocket {
    export { WebSocket, WebSocketServer, WebSocketServer as Server, createWebSocketStream };
  }
}

export { CloseEvent, createWebSocketStream, ErrorEvent, Event, MessageEvent, WebSocket, WebSocketServer, WebSocketServer as Server };
export { WebSocket as 'module.exports' };
export default WebSocket;
