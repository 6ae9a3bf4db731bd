/**
 * Fuzz target for the hub's message parser and dispatcher: random, mutated and hostile client messages (malformed
 * JSON, wrong types, huge topic names, deep nesting, prototype keys, both dialects) fed to a hub through a real
 * engine connection over an in-memory socket. Checked: nothing throws, every message the parser refuses gets an
 * error reply, and the heap stays bounded.
 *
 * @module
 */
import { Duplex } from 'node:stream';
import { createHub, parseRequest } from '../lib/hub/index.js';
import { WebSocketConnection } from '../lib/transport/connection.js';
import { campaignDeadline } from './core.js';

/** Result of {@link runHubCampaign}. */
export interface HubFuzzStats {
  iterations: number;
  errorsReplied: number;
  violations: string[];
  heapGrowthBytes: number;
}

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

const VALID = [
  '{"type":"subscribe","data":{"topic":"orders.eu.#"},"request_id":1}',
  '{"type":"unsubscribe","data":{"channel":"conversation:conv-123"}}',
  '{"type":"publish","data":{"topic":"a.b","type":"t","data":{"x":1}},"request_id":"p"}',
  '{"type":"ping","data":{}}',
  '{"type":"pong","data":{}}',
  '{"type":"presence","data":{"topic":"a.b"},"request_id":2}',
  '{"type":"history","data":{"topic":"a.b","since":{"epoch":"","seq":0}},"request_id":3}',
  '{"type":"subscribe","data":{"topic":"a.*","since":{"positions":{"a.b":{"epoch":"x","seq":1}},"offset":0}},"request_id":4}',
  '{"type":"refresh","data":{"token":"abc"},"request_id":5}',
  '{"action":"subscribe","tenant":"prod","channel":"orders.eu.#"}',
  '{"action":"publish","tenant":"prod","channel":"orders.eu.created","payload":"..."}',
  '{"type":"chat.message","data":{"room":"r","text":"t"},"request_id":6}',
];

const ATOMS = ['null', 'true', '1e308', '-0', '"x"', '[]', '{}', '"#"', '"*.*.#"', '"__proto__"', '{"__proto__":{"polluted":1}}', '"a..b"', '" "', '1.5', '"\\u0000"'];

function generate(r: (n: number) => number): string {
  switch (r(7)) {
    case 0: {
      // Mutate a valid message byte-wise.
      const base = Buffer.from(VALID[r(VALID.length)]);
      for (let k = 1 + r(4); k > 0; k--) base[r(base.length)] = r(128);
      return base.toString('latin1');
    }
    case 1: {
      // Replace one JSON value with an atom of another type.
      const base = VALID[r(VALID.length)];
      return base.replace(/"[^"]*"|\d+|\{\}/g, (m) => (r(4) === 0 ? ATOMS[r(ATOMS.length)] : m));
    }
    case 2:
      return `{"type":"subscribe","data":{"topic":"${'seg.'.repeat(1 + r(2000))}x"},"request_id":${r(100)}}`;
    case 3: {
      const depth = 1 + r(50_000);
      return r(2) ? '['.repeat(depth) + ']'.repeat(depth) : `{"type":"x","data":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
    }
    case 4:
      return VALID[r(VALID.length)].slice(0, r(60));
    case 5:
      return `{"type":${ATOMS[r(ATOMS.length)]},"data":${ATOMS[r(ATOMS.length)]},"request_id":${ATOMS[r(ATOMS.length)]}}`;
    default:
      return VALID[r(VALID.length)];
  }
}

/**
 * Runs the hub target with `seed` for `seconds` or `iterations` inputs, whichever ends first (at least one must be
 * given; a fixed `iterations` makes the run deterministic, whatever the machine's load); returns what it saw.
 */
export async function runHubCampaign(options: { seconds?: number; iterations?: number; seed: number }): Promise<HubFuzzStats> {
  const deadline = campaignDeadline(Date.now(), options);
  const maxIterations = options.iterations ?? Infinity;
  const r = rng(options.seed);
  const hub = createHub({ heartbeat: false, limits: { rate: false, maxSubscriptions: 1000 }, authenticate: (t) => (t === 'abc' ? { user: 'u' } : null) });
  hub.on('message', (_client, m) => {
    if (m.type === 'throws') throw new Error('handler');
  });
  const socket = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  const connection = new WebSocketConnection(socket, 'server', {});
  connection.principal = { user: 'fuzzer' };
  const replies: string[] = [];
  const realSend = connection.send.bind(connection);
  connection.send = ((data: Parameters<typeof realSend>[0], ...rest: never[]) => {
    if (typeof data === 'string') replies.push(data);
    return realSend(data, ...rest);
  }) as typeof connection.send;
  hub.server.emit('connection', connection, { url: '/', path: '/', protocols: [] } as never);
  const violations: string[] = [];
  let iterations = 0;
  let errorsReplied = 0;
  global.gc?.();
  const heapStart = process.memoryUsage().heapUsed;
  while (iterations < maxIterations && Date.now() < deadline) {
    const input = generate(r);
    replies.length = 0;
    const expectError = input !== 'ping' && input.trimStart().startsWith('{') ? parseRequest(input).kind === 'invalid' : true;
    try {
      connection.emit('message', Buffer.from(input, 'latin1'), false);
      await new Promise((resolve) => setImmediate(resolve));
    } catch (error) {
      violations.push(`threw on ${JSON.stringify(input.slice(0, 80))}: ${(error as Error).message}`);
    }
    const gotError = replies.some((x) => x.startsWith('{"type":"error"') || x.startsWith('{"action":"error"'));
    if (gotError) errorsReplied++;
    if (expectError && !gotError && input.trim() !== 'ping') violations.push(`no error reply for ${JSON.stringify(input.slice(0, 80))}`);
    if (connection.readyState !== 1) violations.push(`connection closed by ${JSON.stringify(input.slice(0, 80))}`);
    if (({} as Record<string, unknown>).polluted !== undefined) violations.push('prototype polluted');
    if (violations.length > 20) break;
    iterations++;
  }
  global.gc?.();
  const heapGrowthBytes = process.memoryUsage().heapUsed - heapStart;
  socket.destroy();
  await hub.close();
  return { iterations, errorsReplied, violations, heapGrowthBytes };
}
