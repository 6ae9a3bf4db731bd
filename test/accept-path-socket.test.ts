/**
 * The server's own listener with `net.Socket`s (WSENGINE_ACCEPT_PATH=socket): by default it accepts handle sockets
 * (lib/transport/handle-socket.ts), so the suites that use it run again here, on `net.Socket`s with the direct read
 * and write paths (reads.ts, writes.ts), which connections given to `handleUpgrade` use. Set before the library loads
 * (it is read once, at load), so the suites are imported dynamically.
 */
import t from 'tap';
import './helpers/accept-socket.js';

const { handleAcceptAllowed } = await import('../lib/transport/handle-socket.js');
t.equal(handleAcceptAllowed(), false, 'WSENGINE_ACCEPT_PATH=socket: no handle sockets');
await import('./read-path.test.js');
await import('./write-path.test.js');
await import('./transport.test.js');
await import('./transport-seams.test.js');
await import('./transport-half-close.test.js');
await import('./close-after-large.test.js');
