// Echo server under test for the Autobahn fuzzingclient: `tsx autobahn/testee-server.ts [port]` (default 9001).
import { createServer } from '../lib/index.js';

const port = Number(process.argv[2] ?? 9001);
// AUTOBAHN_TRANSPORT=h2: WebSockets over HTTP/2 (RFC 8441, h2c) as well as HTTP/1.1 upgrades, on the same port.
const h2 = process.env.AUTOBAHN_TRANSPORT === 'h2';

createServer(
  // No heartbeat: an unsolicited ping in the middle of a case would be an unexpected frame for the suite.
  { port, host: '127.0.0.1', maxMessageSize: 64 * 1024 * 1024, heartbeat: false, perMessageDeflate: true, http2: h2 ? { cleartext: true } : undefined },
  (conn) => {
    conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
  },
);

console.log(`testee server listening on ws://127.0.0.1:${port}${h2 ? ' (HTTP/2 too)' : ''}`);
