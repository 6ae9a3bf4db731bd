/**
 * State a connection creates only when it needs it (memory per idle connection): the core's message-assembly state
 * (only while a message arrives in pieces), the outbound queue (only once something has to wait), the async
 * iterator's queue, held input and the close timer; and no state left behind by a fragmented message once delivered.
 * Checked through the internals the code documents (`Protocol.assembling`, the connection's private fields).
 */
import t from 'tap';
import { once } from 'node:events';
import { connect, createServer, type WebSocketConnection } from '../lib/index.js';

type Inside = { core: { assembling: boolean; outputCount: number }; queue: unknown; iterator: unknown; input: unknown; closeTimer: unknown; cbs: unknown[] };
const inside = (c: WebSocketConnection): Inside => c as unknown as Inside;

t.test('an idle connection, and one that only gets single-frame messages, holds no lazily made state', async (t) => {
  let server!: WebSocketConnection;
  const messages: string[] = [];
  const s = createServer({ heartbeat: false }, (conn) => {
    server = conn;
    conn.on('message', (data) => {
      messages.push(data.toString());
      conn.send(data);
    });
  });
  const { port } = await s.listen(0, '127.0.0.1');
  t.teardown(() => s.close({ timeout: 100 }));
  const c = await connect(`ws://127.0.0.1:${port}/`);
  while (server === undefined) await new Promise((r) => setImmediate(r));
  for (const conn of [server, c]) {
    const i = inside(conn);
    t.equal(i.queue, null, 'no outbound queue');
    t.equal(i.iterator, null, 'no iterator state');
    t.equal(i.input, null, 'no held input');
    t.equal(i.closeTimer, null, 'no close timer');
    t.notOk(i.core.assembling, 'no message-assembly state');
  }
  for (let n = 0; n < 3; n++) {
    c.send(`m${n}`);
    await once(c, 'message');
  }
  t.same(messages, ['m0', 'm1', 'm2']);
  t.notOk(inside(server).core.assembling, 'single-frame messages create no assembly state');
  t.equal(inside(server).queue, null, 'echoes went out without a queue');
  t.equal(inside(server).core.outputCount, 0, 'the output batch was written');

  // A fragmented message: the state exists while it arrives and is gone once it is delivered.
  c.sendFragment('frag', false);
  await new Promise((r) => setTimeout(r, 20));
  t.ok(inside(server).core.assembling, 'held while the message is incomplete');
  c.sendFragment('ment', true);
  await once(c, 'message');
  t.equal(messages.at(-1), 'fragment');
  t.notOk(inside(server).core.assembling, 'released after delivery');
  c.close(1000);
  await once(c, 'close');
});

t.test('the outbound queue is made only when something waits: a whole message sent while a fragmented one is open', async (t) => {
  const s = createServer({ heartbeat: false });
  const { port } = await s.listen(0, '127.0.0.1');
  t.teardown(() => s.close({ timeout: 100 }));
  const received: string[] = [];
  const got = new Promise<void>((resolve) =>
    s.on('connection', (conn) =>
      conn.on('message', (data) => {
        received.push(data.toString());
        if (received.length === 2) resolve();
      }),
    ),
  );
  const c = await connect(`ws://127.0.0.1:${port}/`);
  t.equal(inside(c).queue, null);
  c.sendFragment('a', false);
  c.send('whole');
  t.not(inside(c).queue, null, 'the held message made the queue');
  c.sendFragment('b', true);
  await got;
  t.same(received, ['ab', 'whole'], 'the held message followed the final fragment');
  c.close(1000);
  await once(c, 'close');
});
