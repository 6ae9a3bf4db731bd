/**
 * The direct call of a connection's single `message` listener (connection.ts, `deliver`): it must behave exactly as
 * `emit('message')` would, whatever the application does with its listeners — several listeners in order,
 * `prependListener`, `once`, removal during delivery, a listener that throws, `removeAllListeners`, the async
 * iterator beside a listener, and `captureRejections`.
 */
import t from 'tap';
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { WebSocketConnection } from '../lib/index.js';
import { peerFrame } from './helpers/core.js';

/** A server-side connection over an in-memory Duplex; `feed` pushes masked text frames from the "client". */
function pair(): { conn: WebSocketConnection; feed: (...texts: string[]) => void } {
  const socket = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  const conn = new (WebSocketConnection as any)(socket, 'server', {}) as WebSocketConnection;
  const feed = (...texts: string[]): void => {
    socket.push(Buffer.concat(texts.map((s) => peerFrame('server', { opcode: 1, payload: s }))));
  };
  return { conn, feed };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('one listener: called with the connection as this, the data and isBinary', async (t) => {
  const { conn, feed } = pair();
  const got: unknown[] = [];
  conn.on('message', function (this: unknown, data, isBinary) {
    got.push(this === conn, data.toString(), isBinary);
  });
  feed('a', 'b');
  await tick();
  t.same(got, [true, 'a', false, true, 'b', false]);
  conn.terminate();
});

t.test('listeners added and removed between messages, in order, prependListener first', async (t) => {
  const { conn, feed } = pair();
  const got: string[] = [];
  const first = (d: Buffer): number => got.push(`first ${d}`);
  conn.on('message', first);
  feed('1');
  await tick();
  conn.on('message', (d) => got.push(`second ${d}`));
  conn.prependListener('message', (d) => got.push(`prepended ${d}`));
  feed('2');
  await tick();
  conn.off('message', first);
  feed('3');
  await tick();
  conn.removeAllListeners('message');
  feed('4');
  await tick();
  const last = (d: Buffer): number => got.push(`last ${d}`);
  conn.addListener('message', last);
  feed('5');
  await tick();
  conn.removeListener('message', last);
  feed('6');
  await tick();
  t.same(got, ['first 1', 'prepended 2', 'first 2', 'second 2', 'prepended 3', 'second 3', 'last 5']);
  conn.terminate();
});

t.test('once: called for one message only, alone or beside another listener', async (t) => {
  const { conn, feed } = pair();
  const got: string[] = [];
  conn.once('message', (d) => got.push(`once ${d}`));
  feed('a', 'b');
  await tick();
  conn.on('message', (d) => got.push(`on ${d}`));
  conn.prependOnceListener('message', (d) => got.push(`prepended once ${d}`));
  feed('c', 'd');
  await tick();
  t.same(got, ['once a', 'prepended once c', 'on c', 'on d']);
  t.equal(conn.listenerCount('message'), 1);
  conn.terminate();
});

t.test('a listener removing itself or adding another during a message: as emit, the change applies from the next one', async (t) => {
  const { conn, feed } = pair();
  const got: string[] = [];
  const added = (d: Buffer): number => got.push(`added ${d}`);
  const self = (d: Buffer): void => {
    got.push(`self ${d}`);
    conn.off('message', self);
    conn.on('message', added);
  };
  conn.on('message', self);
  feed('x', 'y');
  await tick();
  t.same(got, ['self x', 'added y']);
  conn.terminate();
});

t.test('a listener that throws: the error leaves the read, as with emit', async (t) => {
  const { conn, feed } = pair();
  const boom = new Error('listener failed');
  conn.on('message', () => {
    throw boom;
  });
  const seen = new Promise<unknown>((resolve) => process.once('uncaughtException', resolve));
  feed('z');
  t.equal(await seen, boom);
  conn.terminate();
});

t.test('the async iterator and a listener both see every message', async (t) => {
  const { conn, feed } = pair();
  const got: string[] = [];
  conn.on('message', (d) => got.push(`listener ${d}`));
  const it = conn[Symbol.asyncIterator]();
  feed('m1', 'm2');
  const a = await it.next();
  const b = await it.next();
  t.same([a.value?.data.toString(), b.value?.data.toString()], ['m1', 'm2']);
  t.same(got, ['listener m1', 'listener m2']);
  conn.terminate();
});

t.test('captureRejections: a listener returning a rejected promise reports error, as emit does', async (t) => {
  EventEmitter.captureRejections = true;
  let conn: WebSocketConnection;
  let feed: (...texts: string[]) => void;
  try {
    ({ conn, feed } = pair());
  } finally {
    EventEmitter.captureRejections = false;
  }
  const failure = new Error('async listener failed');
  conn.on('message', async () => {
    throw failure;
  });
  const errored = new Promise<unknown>((resolve) => conn.on('error', resolve));
  feed('r');
  t.equal(await errored, failure);
  conn.terminate();
});
