/**
 * The compression tests (test/deflate.test.ts, test/deflate-hostile.test.ts) with their engine servers and clients
 * over HTTP/2 streams (RFC 8441, h2c): WSENGINE_TEST_TRANSPORT=h2 (test/helpers/transport.ts) switches the
 * servers to `http2: { cleartext: true }`, the clients to `http2: true`, and the raw peers to extended CONNECTs.
 * Tests whose peer is not the engine (ws, a raw TCP server) stay on HTTP/1.1.
 */
process.env.WSENGINE_TEST_TRANSPORT = 'h2';
await import('./deflate.test.js');
await import('./deflate-hostile.test.js');
