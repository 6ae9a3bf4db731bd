/**
 * `wsengine hub --dev` keeps its generated JWT secret and API key in `.wsengine-dev.json` in the working directory
 * (mode 0600, path printed at start), so a token and the API key from one start still work after a restart.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { HubClient } from '../lib/hub-client/index.js';
import { WebSocket } from '../lib/index.js';
import { DEV_CREDENTIALS_FILE, devCredentials } from '../lib/service/dev-credentials.js';
import { api, runBin, startService, type ServiceProcess } from './helpers/service.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'wsengine-dev-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The banner's values. */
async function banner(service: ServiceProcess): Promise<{ secret: string; key: string; token: string; text: string }> {
  await service.waitForOutput(/ {2}token {8}\S+/);
  await service.waitForOutput('stored in');
  const text = service.output();
  return {
    secret: /JWT secret {3}(\S+)/.exec(text)![1],
    key: /API key {6}(\S+)/.exec(text)![1],
    token: /token {8}(\S+)/.exec(text)![1],
    text,
  };
}

/** Opens a hub client with `token`, subscribes, and resolves with the ack's topic (rejects when refused). */
async function subscribeWith(service: ServiceProcess, token: string): Promise<string> {
  const c = new HubClient({ url: service.wsUrl, WebSocket: WebSocket as never, token, backoff: { maxAttempts: 0 } });
  try {
    await c.connect();
    const ack = await c.subscribe('chat.lobby');
    return ack.topic;
  } finally {
    c.close();
  }
}

t.test('two starts in one folder: same secret and key; a token of the first start works on the second', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, DEV_CREDENTIALS_FILE);
  const first = await startService(['--dev', '--port', '0'], {}, 20_000, { cwd: dir });
  t.teardown(() => first.stop('SIGKILL'));
  const one = await banner(first);
  t.match(one.text, `stored in    ${file}`, 'the banner prints the file');
  t.match(one.text, '(new;', 'created on the first start');
  t.match(first.output(), /event=dev_credentials file=\S+ state=created/, 'and logs it');
  t.equal(statSync(file).mode & 0o777, 0o600, 'the file is private (0600)');
  const stored = JSON.parse(readFileSync(file, 'utf8')) as { jwtSecret: string; apiKey: string };
  t.equal(stored.jwtSecret, one.secret);
  t.equal(stored.apiKey, one.key);
  // A token the demo page would get from the first start.
  const pageToken = (await (await fetch(new URL('/dev/token', first.url), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"bob"}' })).json()) as { token: string };
  t.equal(await subscribeWith(first, one.token), 'chat.lobby', 'the banner token works on the first start');
  t.same(await first.stop('SIGTERM'), { code: 0, signal: null });

  const second = await startService(['--dev', '--port', '0'], {}, 20_000, { cwd: dir });
  t.teardown(() => second.stop('SIGKILL'));
  const two = await banner(second);
  t.equal(two.secret, one.secret, 'the same JWT secret');
  t.equal(two.key, one.key, 'the same API key');
  t.match(two.text, '(reused,', 'the banner says the file was reused');
  t.equal(await subscribeWith(second, one.token), 'chat.lobby', 'the first start\'s banner token works on the second');
  t.equal(await subscribeWith(second, pageToken.token), 'chat.lobby', 'and so does a token the first start gave the demo page');
  const presence = await api(second, 'GET', '/api/presence?topic=chat.lobby', undefined, one.key);
  t.equal(presence.status, 200, 'the first start\'s API key works on the second');
  t.equal(statSync(file).mode & 0o777, 0o600, 'still 0600');
  await second.stop('SIGTERM');

  // Deleted: new credentials, and the old token is refused.
  rmSync(file);
  const third = await startService(['--dev', '--port', '0'], {}, 20_000, { cwd: dir });
  t.teardown(() => third.stop('SIGKILL'));
  const three = await banner(third);
  t.not(three.secret, one.secret, 'a deleted file gives a new secret');
  t.not(three.key, one.key, 'and a new key');
  await t.rejects(subscribeWith(third, one.token), { code: 'closed' }, 'the old token is refused (4401, fixed token: stop)');
  await third.stop('SIGTERM');
});

t.test('flags win over the file and are not stored; a foreign file stops the start; loose permissions narrowed', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, DEV_CREDENTIALS_FILE);
  const created = devCredentials(dir, {});
  t.equal(created.state, 'created');
  t.equal(created.path, file);
  const secret = 'a-secret-given-on-the-command-line-0123456789';
  const withFlag = devCredentials(dir, { jwtSecret: secret });
  t.same([withFlag.state, withFlag.jwtSecret, withFlag.apiKey], ['loaded', secret, created.apiKey], 'the flag wins; the stored key is used');
  t.equal((JSON.parse(readFileSync(file, 'utf8')) as { jwtSecret: string }).jwtSecret, created.jwtSecret, 'the given secret is not written');
  t.same(devCredentials(dir, { jwtSecret: secret, apiKey: 'given-key-123' }), { jwtSecret: secret, apiKey: 'given-key-123', path: file, state: 'flags' });

  chmodSync(file, 0o644);
  const loose = devCredentials(dir, {});
  t.equal(loose.note, 'permissions narrowed to 0600');
  t.equal(statSync(file).mode & 0o777, 0o600);

  writeFileSync(file, JSON.stringify({ jwtSecret: created.jwtSecret }));
  const completed = devCredentials(dir, {});
  t.equal(completed.jwtSecret, created.jwtSecret, 'a file without an API key keeps its secret');
  t.equal((JSON.parse(readFileSync(file, 'utf8')) as { apiKey: string }).apiKey, completed.apiKey, 'and is completed with a new key');

  writeFileSync(file, 'not json');
  const bad = await runBin(['hub', '--dev', '--port', '0'], {}, dir);
  t.equal(bad.code, 2, 'a file that is not ours: exit status 2');
  t.match(bad.stderr, `${file} is not a wsengine development credentials file`);
  t.match(bad.stderr, 'delete it to generate new credentials');
  t.equal(readFileSync(file, 'utf8'), 'not json', 'and it is left alone');

  if (process.getuid?.() !== 0) {
    const locked = tempDir(t);
    chmodSync(locked, 0o500);
    t.teardown(() => chmodSync(locked, 0o700));
    const unsaved = devCredentials(locked, {});
    t.equal(unsaved.state, 'unsaved', 'a folder that cannot be written: credentials for this run only');
    t.match(unsaved.note, /cannot write/);
  }
});
