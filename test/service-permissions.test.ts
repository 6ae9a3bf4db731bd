/**
 * Channel permissions through the service: rules from the config file (`--config`), every rule kind × action over
 * real sockets and over the HTTP API (the server side: allowed unless `nobody`), the config file's precedence and
 * errors, and the service's defaults without a config (`user.{sub}.#` private; `--dev` open).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { signJwt } from '../lib/hub/index.js';
import { api, runBin, SECRET, serviceArgs, startService, tokenFor } from './helpers/service.js';
import { openSocket, type RecordingSocket } from './helpers/socket.js';

const dir = mkdtempSync(join(tmpdir(), 'wsengine-permissions-'));
const configPath = join(dir, 'wsengine.json');
writeFileSync(
  configPath,
  JSON.stringify({
    'history-size': 50,
    permissions: {
      rules: [
        { pattern: 'user.{sub}.#', subscribe: 'owner', publish: 'owner', history: 'owner', presence: 'owner' },
        { pattern: 'news.#', subscribe: 'signed-in', publish: 'server', history: 'signed-in', presence: 'nobody' },
        { pattern: 'vip.#', subscribe: 'granted', publish: 'granted', history: 'granted', presence: 'granted' },
        { pattern: 'secret.#', subscribe: 'nobody', publish: 'nobody', history: 'nobody', presence: 'nobody' },
      ],
      defaults: { subscribe: 'signed-in', publish: 'signed-in', history: 'signed-in', presence: 'signed-in' },
    },
  }),
);

const service = await startService(serviceArgs(['--config', configPath]));
t.teardown(() => service.stop('SIGKILL'));

async function client(user: string, claims: Record<string, unknown> = {}): Promise<RecordingSocket> {
  const token = signJwt({ sub: user, ...claims }, SECRET, { expiresIn: 600 });
  const s = openSocket(service.wsUrl, ['bearer', token]);
  await s.opened;
  return s;
}

let id = 0;
async function ask(s: RecordingSocket, type: string, data: Record<string, unknown>): Promise<string> {
  const requestId = `r${++id}`;
  s.send({ type, data, request_id: requestId });
  const reply = await s.next((m) => m.request_id === requestId && (m.type === 'ack' || m.type === 'error'));
  return reply.type === 'ack' ? 'ok' : reply.data.code;
}

t.test('sockets: every rule kind × action', async (t) => {
  const alice = await client('alice');
  const bob = await client('bob', { topics: ['vip.gold.#'] });
  t.teardown(() => {
    alice.ws.close();
    bob.ws.close();
  });
  const rows: Array<[RecordingSocket, string, string, string, string, Record<string, unknown>?]> = [
    [alice, 'alice', 'subscribe', 'user.alice.inbox', 'ok'],
    [alice, 'alice', 'subscribe', 'user.bob.inbox', 'unauthorized'],
    [alice, 'alice', 'publish', 'user.alice.inbox', 'ok'],
    [alice, 'alice', 'publish', 'user.bob.inbox', 'unauthorized'],
    [alice, 'alice', 'history', 'user.bob.inbox', 'unauthorized'],
    [alice, 'alice', 'presence', 'user.bob.inbox', 'unauthorized'],
    [alice, 'alice', 'subscribe', 'news.eu', 'ok'],
    [alice, 'alice', 'publish', 'news.eu', 'unauthorized'],
    [alice, 'alice', 'history', 'news.eu', 'ok'],
    [alice, 'alice', 'presence', 'news.eu', 'unauthorized'],
    [bob, 'bob', 'subscribe', 'vip.gold.x', 'ok'],
    [bob, 'bob', 'publish', 'vip.gold.x', 'ok'],
    [alice, 'alice', 'subscribe', 'vip.gold.x', 'unauthorized'],
    [alice, 'alice', 'subscribe', 'vip.gold.x', 'ok', { token: signJwt({ sub: 'alice', topic: 'vip.gold.x' }, SECRET, { expiresIn: 60 }) }],
    [alice, 'alice', 'subscribe', 'secret.x', 'unauthorized'],
    [alice, 'alice', 'history', 'secret.x', 'unauthorized'],
    [alice, 'alice', 'publish', 'misc.x', 'ok'],
  ];
  for (const [s, who, action, topic, expected, extra] of rows) {
    const data = action === 'publish' ? { topic, type: 'note', data: {}, ...extra } : { topic, ...extra };
    t.equal(await ask(s, action, data), expected, `${who} ${action} ${topic}${extra ? ' (subscription token)' : ''}`);
  }
});

t.test('HTTP API: the server may do what clients may not, except where the rule says nobody (403)', async (t) => {
  const ok = await api(service, 'POST', '/api/publish', { topic: 'news.eu', type: 'headline', data: {} });
  t.equal(ok.status, 200, 'publish to a server-only topic');
  const own = await api(service, 'POST', '/api/publish', { topic: 'user.alice.inbox', type: 'dm', data: {} });
  t.equal(own.status, 200, 'publish to a user\'s private topic (the backend notifies its users)');
  const secret = await api(service, 'POST', '/api/publish', { topic: 'secret.x', type: 'x', data: {} });
  t.equal(secret.status, 403, 'publish to a nobody topic');
  t.match(secret.body.error.message, /nobody may publish secret\.x/);
  t.equal((await api(service, 'GET', '/api/history?topic=secret.x')).status, 403, 'history of a nobody topic');
  t.equal((await api(service, 'GET', '/api/presence?topic=news.eu')).status, 403, 'presence where it is nobody\'s');
  t.equal((await api(service, 'GET', '/api/history?topic=news.eu')).status, 200, 'history where the server may');
});

t.test('the config file: flags and env win over it; unknown keys and bad rules are refused with exit status 2', async (t) => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ 'no-such-flag': 1 }));
  const unknown = await runBin(['hub', '--config', bad]);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown key "no-such-flag"/);
  writeFileSync(bad, JSON.stringify({ permissions: { rules: [{ pattern: 'a.#', publish: 'owner' }] } }));
  const rule = await runBin(['hub', '--config', bad, '--jwt-secret', SECRET]);
  t.equal(rule.code, 2);
  t.match(rule.stderr, /permissions\.rules\[0\]\.publish is "owner" but the pattern has no \{sub\}/);
  writeFileSync(bad, '{ not json');
  t.match((await runBin(['hub', '--config', bad])).stderr, /not valid JSON/);
  const { parseConfig } = await import('../lib/service/config.js');
  const file = join(dir, 'sizes.json');
  writeFileSync(file, JSON.stringify({ 'history-size': 7, 'max-buffered': '2MiB', origins: ['https://a.example'], dev: true }));
  const parsed = parseConfig({ argv: ['--config', file, '--history-size', '9'], env: { WSENGINE_MAX_BUFFERED: '3MiB' } });
  if (parsed.help) throw new Error('unexpected help');
  t.equal(parsed.config.historySize, 9, 'a flag wins over the file');
  t.equal(parsed.sources.historySize, 'flag');
  t.equal(parsed.config.maxBuffered, 3 * 1024 * 1024, 'the environment wins over the file');
  t.same(parsed.config.origins, ['https://a.example'], 'a list from a JSON array');
  t.equal(parsed.sources.origins, 'file');
  t.equal(parsed.config.dev, true);
});

t.test('without a config: user.{sub}.# is private, the rest open to signed-in clients', async (t) => {
  const plain = await startService(serviceArgs());
  t.teardown(() => plain.stop('SIGKILL'));
  const s = openSocket(plain.wsUrl, ['bearer', tokenFor('alice')]);
  await s.opened;
  t.equal(await ask(s, 'subscribe', { topic: 'user.bob.inbox' }), 'unauthorized', 'another user\'s space');
  t.equal(await ask(s, 'subscribe', { topic: 'user.alice.inbox' }), 'ok', 'one\'s own');
  t.equal(await ask(s, 'subscribe', { topic: 'room.1' }), 'ok');
  t.equal(await ask(s, 'publish', { topic: 'room.1', type: 'chat', data: {} }), 'ok');
  t.equal(await ask(s, 'subscribe', { topic: '#' }), 'ok', '# is accepted, filtered');
  await api(plain, 'POST', '/api/publish', { topic: 'user.bob.inbox', type: 'dm', data: { n: 'bob' } });
  await api(plain, 'POST', '/api/publish', { topic: 'room.2', type: 'chat', data: { n: 'room' } });
  await s.next((m) => m.type === 'chat' && m.data?.n === 'room');
  t.notOk(s.messages.some((m) => m.type === 'dm'), 'bob\'s private message did not reach alice\'s #');
  s.ws.close();
});

t.test('--dev: no default rules (everything open to signed-in clients)', async (t) => {
  const { hubOptions } = await import('../lib/service/hub-adapter.js');
  const { parseConfig } = await import('../lib/service/config.js');
  const dev = parseConfig({ argv: ['--dev'] });
  const prod = parseConfig({ argv: ['--jwt-secret', SECRET] });
  if (dev.help || prod.help) throw new Error('unexpected help');
  t.equal(hubOptions(dev.config, undefined, () => {}).permissions, undefined, '--dev: none');
  t.same(hubOptions(prod.config, undefined, () => {}).permissions?.rules?.map((r) => r.pattern), ['user.{sub}.#'], 'otherwise: the private user space');
});
