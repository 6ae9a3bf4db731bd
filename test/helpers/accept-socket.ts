/**
 * Imported first by the tests of the `net.Socket` read and write paths: the server's own listener then accepts
 * `net.Socket`s (WSENGINE_ACCEPT_PATH=socket, read once when the library loads) instead of handle sockets
 * (lib/transport/handle-socket.ts), so those paths are what its connections use.
 */
process.env.WSENGINE_ACCEPT_PATH = 'socket';
