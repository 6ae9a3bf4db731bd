/**
 * Which transport a parameterized test file runs over: `WSENGINE_TEST_TRANSPORT=h2` runs its WebSockets as HTTP/2
 * streams (RFC 8441, cleartext h2c) instead of TCP connections of their own. Read at import: a file that sets it
 * before importing a test file (test/http2-deflate.test.ts) runs that file over HTTP/2.
 */
export const TRANSPORT: 'h1' | 'h2' = process.env.WSENGINE_TEST_TRANSPORT === 'h2' ? 'h2' : 'h1';

/** Server options that make an engine server listen over the chosen transport (HTTP/1.1 stays served either way). */
export const SERVER_TRANSPORT: { http2?: { cleartext: true } } = TRANSPORT === 'h2' ? { http2: { cleartext: true } } : {};

/** Client options that make `connect` open its WebSockets over the chosen transport. */
export const CLIENT_TRANSPORT: { http2?: true } = TRANSPORT === 'h2' ? { http2: true } : {};

/** The status of an accepted opening handshake: 101 over HTTP/1.1, 200 over HTTP/2 (RFC 8441 §5). */
export const ACCEPTED_STATUS = TRANSPORT === 'h2' ? 200 : 101;
