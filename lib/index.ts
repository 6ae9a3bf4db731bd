/**
 * wsengine: a zero-dependency RFC 6455 WebSocket engine for Node.js.
 *
 * @module
 */
export * from './core/index.js';
