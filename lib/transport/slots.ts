/**
 * The keys under which the server and a connection keep their back-references on a socket (module-level listeners
 * find their owner through them: no closure per socket). In a module of their own so that handle-socket.ts can
 * reserve them as fields of every handle socket, which then keeps them in the object rather than in an extra
 * property store.
 *
 * @module
 */

/** The server handling the socket's handshake (server.ts). */
export const kServer = Symbol('wsengine.handshake');
/** The head parser of the socket's handshake (server.ts). */
export const kParser = Symbol('wsengine.headParser');
/** The connection the socket carries (socket.ts). */
export const kConnection = Symbol('wsengine.connection');
