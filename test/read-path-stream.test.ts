/**
 * The public read path: the same suites as on the direct path (lib/transport/reads.ts), with
 * WSENGINE_READ_PATH=stream, under which every socket reads through its Readable stream's `data` events. Set before
 * the library loads (it is read once, at load), so the suites are imported dynamically.
 */
import t from 'tap';

process.env.WSENGINE_READ_PATH = 'stream';
const { directReadsAllowed } = await import('../lib/transport/reads.js');
t.equal(directReadsAllowed(), false, 'WSENGINE_READ_PATH=stream turns direct reads off');
await import('./read-path.test.js');
await import('./transport.test.js');
await import('./transport-seams.test.js');
await import('./deflate-hostile.test.js');
await import('./close-after-large.test.js');
await import('./transport-half-close.test.js');
