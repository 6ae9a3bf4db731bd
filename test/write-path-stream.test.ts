/**
 * The public write path: the write-path suite and the transport suites again with WSENGINE_WRITE_PATH=stream,
 * under which every socket writes through `socket.write`. Set before the library loads (it is read once, at load),
 * so the suites are imported dynamically; tap runs this file in a process of its own.
 */
import t from 'tap';

process.env.WSENGINE_WRITE_PATH = 'stream';
const { directWritesAllowed } = await import('../lib/transport/writes.js');
t.equal(directWritesAllowed(), false, 'WSENGINE_WRITE_PATH=stream turns direct writes off');
await import('./write-path.test.js');
await import('./transport.test.js');
await import('./transport-seams.test.js');
await import('./close-after-large.test.js');
await import('./transport-half-close.test.js');
