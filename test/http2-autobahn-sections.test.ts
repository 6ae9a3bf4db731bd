/**
 * The Autobahn sections (test/autobahn-sections.test.ts) with every WebSocket over an HTTP/2 stream (RFC 8441):
 * the same cases and assertions, the harness switched by AUTOBAHN_TRANSPORT=h2 (see test/autobahn-sections/wire.ts):
 * each server case opens an h2c session and an extended CONNECT to the testee server (started with HTTP/2 on), and
 * the client cases run the testee client with `http2: true` against an HTTP/2 fuzzingserver, all its cases on one
 * shared session. "TCP closed" in the case names then means the stream closed (END_STREAM both ways).
 */
process.env.AUTOBAHN_TRANSPORT = 'h2';
await import('./autobahn-sections.test.js');
