/**
 * graphql-ws 6 on wsengine/ws, its `useServer` unchanged: the subprotocol is chosen (it sets `handleProtocols` on
 * the server's options), a subscription yields its values, a query answers, `dispose()` finishes. The client is
 * graphql-ws's own, on the ws-style `WebSocket` of wsengine/ws.
 */
import { buildSchema } from 'graphql';
import { createClient } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocket, WebSocketServer } from '../lib/ws/index.js';
import { next, WAIT } from './helpers/ws-compat.js';

const schema = buildSchema(`
  type Query { hello: String }
  type Subscription { countdown(from: Int!): Int }
`);

const roots = {
  query: { hello: () => 'world' },
  subscription: {
    countdown: async function* ({ from }: { from: number }) {
      for (let i = from; i >= 0; i--) {
        await new Promise((r) => setTimeout(r, 5));
        yield { countdown: i };
      }
    },
  },
};

t.test('useServer: a query, a subscription yielding values, dispose', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', path: '/graphql' });
  await next(wss, 'listening');
  const port = (wss.address() as AddressInfo).port;
  // graphql-ws types its parameter with @types/ws's class, which this one does not claim to be: hence the cast.
  const server = useServer({ schema, roots }, wss as never);
  const protocols: string[] = [];
  wss.on('connection', (ws: WebSocket) => protocols.push(ws.protocol));

  const client = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
  t.teardown(() => client.dispose());

  const hello = await new Promise<unknown>((resolve, reject) => {
    let result: unknown;
    client.subscribe({ query: '{ hello }' }, { next: (v) => (result = v), error: reject, complete: () => resolve(result) });
  });
  t.same(hello, { data: { hello: 'world' } });

  const values: number[] = [];
  await Promise.race([
    new Promise<void>((resolve, reject) => {
      client.subscribe<{ countdown: number }>(
        { query: 'subscription { countdown(from: 3) }' },
        { next: (v) => values.push(v.data!.countdown), error: reject, complete: resolve },
      );
    }),
    new Promise((_, reject) => setTimeout(() => reject(new Error('subscription timed out')), WAIT).unref()),
  ]);
  t.same(values, [3, 2, 1, 0], 'every value of the subscription');
  t.same([...new Set(protocols)], ['graphql-transport-ws'], "graphql-ws's subprotocol was chosen");

  const disposed = server.dispose();
  await Promise.race([disposed, new Promise((_, reject) => setTimeout(() => reject(new Error('dispose() hangs')), WAIT).unref())]);
  t.pass('dispose() resolved');
  t.equal(wss.address(), null, 'the server is closed');
});
