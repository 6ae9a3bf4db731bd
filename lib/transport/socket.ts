/**
 * The socket adapter of a {@link WebSocketConnection}: the socket's listeners are module-level functions that find
 * their connection through a symbol on the socket (`this`), so a connection costs no closure and no listener object
 * of its own; reads go straight from the handle where Node allows it (see reads.ts).
 *
 * @module
 */
import type { Duplex } from 'node:stream';
import type { WebSocketConnection } from './connection.js';
import { readDirectly } from './reads.js';
import { kConnection } from './slots.js';

type SocketWithConnection = Duplex & { [kConnection]: WebSocketConnection<any, any> };

function onSocketData(this: SocketWithConnection, chunk: Buffer, borrowed?: boolean): number {
  return this[kConnection].receive(chunk, borrowed === true);
}
function onSocketDrain(this: SocketWithConnection): void {
  this[kConnection].onDrain();
}
function onSocketError(this: SocketWithConnection, error: Error): void {
  this[kConnection].onSocketError(error);
}
function onSocketEnd(this: SocketWithConnection): void {
  this[kConnection].onEnd();
}
function onSocketClose(this: SocketWithConnection): void {
  this[kConnection].finish();
}

/**
 * Wires `socket` to `connection`: reads (direct where possible, `data` events always), `drain`, `error`, the peer's
 * FIN (`end`: a socket made with `allowHalfOpen`, as node:http's, would otherwise stay half-open) and `close`.
 */
export function attachSocket(socket: Duplex, connection: WebSocketConnection<any, any>): void {
  (socket as SocketWithConnection)[kConnection] = connection;
  // Reads go straight from the socket's handle to `receive` where Node allows it (see reads.ts); `data` events
  // then carry only what the stream had buffered before. Elsewhere (TLS, other Duplexes) they carry everything.
  socket.on('data', onSocketData);
  readDirectly(socket, onSocketData);
  socket.on('drain', onSocketDrain);
  socket.on('error', onSocketError);
  socket.on('close', onSocketClose);
  socket.on('end', onSocketEnd);
}
