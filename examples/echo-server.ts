// Echo server: `npx tsx examples/echo-server.ts` (listens on ws://127.0.0.1:8080).
import { createServer } from '../lib/index.js';

const server = createServer({ port: 8080, host: '127.0.0.1', perMessageDeflate: true }, (conn) => {
  conn.on('message', (data, isBinary) => conn.send(data, { binary: isBinary }));
});
server.on('listening', ({ port }) => console.log(`echo server on ws://127.0.0.1:${port}`));
process.once('SIGINT', () => void server.close({ code: 1001 }).then(() => process.exit(0)));
