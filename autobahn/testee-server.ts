// @ts-nocheck
// TODO(api): remove once lib/index.ts exports createServer/connect
// Echo server under test for the Autobahn fuzzingclient: `tsx autobahn/testee-server.ts [port]` (default 9001).
import { createServer } from '../lib/index.js';

const port = Number(process.argv[2] ?? 9001);

createServer(
  { port, host: '127.0.0.1', perMessageDeflate: true, maxMessageSize: 64 * 1024 * 1024 },
  (conn) => {
    conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
  },
);

console.log(`testee server listening on ws://127.0.0.1:${port}`);
