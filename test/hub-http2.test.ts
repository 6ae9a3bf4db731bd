/**
 * `Hub.handleStream`: a WebSocket over HTTP/2 (RFC 8441) reaches the hub as an upgrade does — held while the
 * backplane attaches, then authenticated and registered like any connection; a stream reset while it waits is
 * dropped without a trace. Over h2c (`node:http2`'s cleartext server), with this package's client.
 */
import t from 'tap';
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createHub, MemoryBackplane, type BackplaneSink, type Hub } from '../lib/hub/index.js';
import { connect } from '../lib/index.js';
import { SECRET, token } from './helpers/hub.js';

/** A memory backplane whose `attach` waits for `release()`. */
class GatedBackplane extends MemoryBackplane {
  readonly calls: string[] = [];
  private open!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.open = resolve));
  override async attach(sink: BackplaneSink): Promise<void> {
    await this.gate;
    await super.attach(sink);
    this.calls.push('attached');
  }
  override async registerConnection(user: string, connectionId: string): Promise<string[]> {
    this.calls.push(`register ${user}`);
    return super.registerConnection(user, connectionId);
  }
  release(): void {
    this.open();
  }
}

async function serve(backplane: GatedBackplane): Promise<{ hub: Hub; server: Http2Server; port: number; streams: () => number }> {
  const hub = createHub({ jwt: { secret: SECRET }, backplane });
  const server = createH2Server({ settings: { enableConnectProtocol: true } });
  let streams = 0;
  server.on('stream', (stream, headers) => {
    streams++;
    if (headers[':method'] === 'CONNECT') hub.handleStream(stream, headers);
    else stream.respond({ ':status': 404 }, { endStream: true });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { hub, server, port: (server.address() as AddressInfo).port, streams: () => streams };
}

t.test('a stream during attach waits for it; the connection is registered after the backplane is ready', async (t) => {
  const backplane = new GatedBackplane();
  const { hub, server, port, streams } = await serve(backplane);
  t.teardown(async () => {
    await hub.close();
    server.close();
  });
  let opened = false;
  const pending = connect(`ws://127.0.0.1:${port}/ws?token=${token('early')}`, { http2: true }).then((c) => {
    opened = true;
    return c;
  });
  await new Promise((r) => setTimeout(r, 300));
  t.equal(streams(), 1, 'the CONNECT stream reached the server');
  t.notOk(opened, 'not answered while the backplane attaches');
  t.same(backplane.calls, [], 'nothing registered yet');
  backplane.release();
  const conn = await pending;
  t.equal(conn.transport, 'h2', 'a WebSocket over HTTP/2');
  for (let i = 0; i < 100 && backplane.calls.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.same(backplane.calls, ['attached', 'register early'], 'registered after attach');

  // It subscribes and receives a publication like any connection.
  const got = new Promise<{ topic: string; data: unknown }>((resolve) => {
    conn.on('message', (data: Buffer) => {
      const m = JSON.parse(data.toString()) as { type: string; topic?: string; data: unknown };
      if (m.topic === 'news') resolve({ topic: m.topic, data: m.data });
    });
  });
  const acked = new Promise<void>((resolve) => {
    const on = (data: Buffer): void => {
      if ((JSON.parse(data.toString()) as { request_id?: unknown }).request_id === 1) {
        conn.off('message', on);
        resolve();
      }
    };
    conn.on('message', on);
  });
  conn.send(JSON.stringify({ type: 'subscribe', data: { topic: 'news' }, request_id: 1 }));
  await acked;
  await hub.publish({ topic: 'news', type: 'headline', data: { text: 'over a stream' } });
  t.same(await got, { topic: 'news', data: { text: 'over a stream' } }, 'the publication arrives over the stream');
  t.equal(hub.stats().connections, 1);
  conn.close();
});

t.test('a stream reset while the backplane attaches is dropped, not handed over', async (t) => {
  const backplane = new GatedBackplane();
  const { hub, server, port, streams } = await serve(backplane);
  t.teardown(async () => {
    await hub.close();
    server.close();
  });
  const controller = new AbortController();
  const pending = connect(`ws://127.0.0.1:${port}/ws?token=${token('gone')}`, { http2: true, signal: controller.signal }).then(
    () => 'opened',
    (error: Error) => `failed: ${error.message}`,
  );
  await new Promise((r) => setTimeout(r, 300));
  t.equal(streams(), 1, 'the CONNECT stream reached the server');
  controller.abort();
  t.match(await pending, /^failed/, 'the client gave up');
  await new Promise((r) => setTimeout(r, 100));
  backplane.release();
  await new Promise((r) => setTimeout(r, 300));
  t.same(backplane.calls, ['attached'], 'no connection registered for the reset stream');
  t.equal(hub.stats().connections, 0);
});
