// Hub client: `HUB_URL=ws://127.0.0.1:8080/ws HUB_TOKEN=<jwt> npx tsx examples/hub-client.ts` (the README's "Hub client" example).
import { WebSocket } from '../lib/index.js';
import { HubClient, HubError } from '../lib/hub-client/index.js';

const HUB_URL = process.env.HUB_URL ?? 'ws://127.0.0.1:8080/ws';

// Called before every connection attempt, so a reconnect always carries a fresh token. A real application fetches
// one from its backend here; this example reads it from the environment.
async function fetchToken(): Promise<string> {
  return process.env.HUB_TOKEN ?? 'dev-token';
}

const client = new HubClient({
  url: HUB_URL,
  WebSocket, // in a browser, leave this out: globalThis.WebSocket is used
  token: fetchToken,
  onTokenExpired: () => fetchToken(), // on close code 4401: a new token, then reconnect
  backoff: { initialDelay: 500, maxDelay: 30_000, stableAfter: 5_000 },
  queue: { max: 100, overflow: 'reject-newest' },
});
client.on('state', (state) => console.log('state:', state));
client.on('message', (m) => console.log('message:', m.topic, m.seq, m.type, JSON.stringify(m.data)));
client.on('gap', (g) => console.warn(`lost ${g.topic} ${g.from}..${g.to}`));
client.on('error', (e) => console.warn('hub client:', e.code, e.message));

await client.connect();
const ack = await client.subscribe('chat.#');
console.log('subscribed, recovered:', ack.recovered);
try {
  const { seq } = await client.publish({ topic: 'chat.lobby', type: 'say', data: { text: 'hello' } });
  console.log('published as seq', seq);
} catch (error) {
  if (error instanceof HubError) console.error('publish failed:', error.code, error.message);
  else throw error;
}
setTimeout(() => client.close(), 200);
