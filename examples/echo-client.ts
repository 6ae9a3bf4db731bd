// Echo client: `npx tsx examples/echo-client.ts [ws://127.0.0.1:8080]`.
import { connect } from '../lib/index.js';

const conn = await connect(process.argv[2] ?? 'ws://127.0.0.1:8080', { perMessageDeflate: true });
conn.on('message', (data) => {
  console.log('echo:', data.toString());
  conn.close(1000, 'done');
});
conn.on('close', (code, reason) => console.log('closed', code, reason));
conn.send('hello, websocket');
