// Echo client under test for the Autobahn fuzzingserver: `tsx autobahn/testee-client.ts [ws://127.0.0.1:9001]`.
import { connect, type WebSocketConnection } from '../lib/index.js';

const base = process.argv[2] ?? 'ws://127.0.0.1:9001';
const agent = 'wsengine';
// AUTOBAHN_TRANSPORT=h2: every case is a WebSocket over HTTP/2 (RFC 8441), all of them on one shared h2c session.
const options = { maxMessageSize: 64 * 1024 * 1024, perMessageDeflate: true, http2: process.env.AUTOBAHN_TRANSPORT === 'h2' };

type OnMessage = (conn: WebSocketConnection, data: Buffer, isBinary: boolean) => void;

/** Opens `path`, hands every message to `onMessage`, resolves once the connection has closed. */
async function session(path: string, onMessage: OnMessage = () => {}): Promise<void> {
  let conn: WebSocketConnection;
  try {
    conn = await connect(`${base}${path}`, options);
  } catch (error) {
    console.error(`${path}: ${(error as Error).message}`);
    return;
  }
  await new Promise<void>((resolve) => {
    conn.on('message', (data, isBinary) => onMessage(conn, data, isBinary));
    conn.on('error', () => {}); // protocol errors are what the cases provoke; the close still follows
    conn.on('close', () => resolve());
  });
}

let count = NaN;
await session('/getCaseCount', (_, data) => {
  if (Number.isNaN(count)) count = Number(JSON.parse(data.toString()));
});
if (!Number.isInteger(count) || count < 0) throw new Error(`bad case count from ${base}/getCaseCount`);

for (let i = 1; i <= count; i++) {
  await session(`/runCase?case=${i}&agent=${agent}`, (conn, data, isBinary) => conn.send(data, { binary: isBinary }));
  console.log(`case ${i}/${count}`);
}
await session(`/updateReports?agent=${agent}`);
console.log('reports updated');
