/**
 * The service's configuration: flags, environment variables, defaults, durations and sizes, `--help`, and bad
 * values refused with one line naming the flag and exit status 2 (through the bin).
 */
import t from 'tap';
import { ConfigError, configSummary, envName, helpText, OPTIONS, parseConfig, parseDuration, parseSize } from '../lib/service/config.js';
import { runBin, SECRET } from './helpers/service.js';

const base = ['--jwt-secret', SECRET];

t.test('defaults, flags and environment variables (a flag wins)', async (t) => {
  const parsed = parseConfig({ argv: base });
  if (parsed.help) throw new Error('unexpected help');
  const c = parsed.config;
  t.equal(c.port, 8080);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.maxMessageSize, 65536);
  t.equal(c.maxConnectionsPerUser, 5);
  t.equal(c.heartbeatInterval, 30_000);
  t.equal(c.heartbeatTimeout, 60_000);
  t.equal(c.authDeadline, 5_000);
  t.equal(c.slowConsumer, 'disconnect');
  t.equal(c.historyMaxBytes, 64 * 1024 * 1024);
  t.equal(c.historyTopicMaxBytes, 8 * 1024 * 1024);
  t.equal(c.dev, false);
  const env = parseConfig({ argv: [...base, '--port=9001', '--heartbeat-interval', '10s', '--dev'], env: { WSENGINE_PORT: '7000', WSENGINE_HOST: '0.0.0.0', WSENGINE_MAX_MESSAGE_SIZE: '1MiB', WSENGINE_ORIGINS: 'https://a.example, https://b.example', WSENGINE_HEARTBEAT_TIMEOUT: '2m' } });
  if (env.help) throw new Error('unexpected help');
  t.equal(env.config.port, 9001, 'the flag wins over WSENGINE_PORT');
  t.equal(env.sources.port, 'flag');
  t.equal(env.config.host, '0.0.0.0');
  t.equal(env.sources.host, 'env');
  t.equal(env.config.maxMessageSize, 1024 * 1024);
  t.same(env.config.origins, ['https://a.example', 'https://b.example']);
  t.equal(env.config.heartbeatInterval, 10_000);
  t.equal(env.config.heartbeatTimeout, 120_000);
  t.equal(env.config.dev, true);
  t.same(parseConfig({ argv: ['--help'] }), { help: true });
  const sizes = parseConfig({ argv: [...base, '--history-max-bytes', '256MiB'], env: { WSENGINE_HISTORY_TOPIC_MAX_BYTES: '512k' } });
  if (sizes.help) throw new Error('unexpected help');
  t.equal(sizes.config.historyMaxBytes, 256 * 1024 * 1024);
  t.equal(sizes.config.historyTopicMaxBytes, 512 * 1024);
  t.equal(sizes.sources.historyTopicMaxBytes, 'env');
});

t.test('durations and sizes', async (t) => {
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('1500'), 1500);
  t.equal(parseDuration('5m'), 300_000);
  t.equal(parseDuration('1h'), 3_600_000);
  t.equal(parseDuration('1.5s'), 1500);
  for (const bad of ['', 's', '-1s', '10 years', '1e3']) t.equal(parseDuration(bad), undefined, `${JSON.stringify(bad)} refused`);
  t.equal(parseSize('64k'), 65536);
  t.equal(parseSize('64KiB'), 65536);
  t.equal(parseSize('1MiB'), 1048576);
  t.equal(parseSize('100'), 100);
  for (const bad of ['', 'k', '-1', '12 parsecs']) t.equal(parseSize(bad), undefined, `${JSON.stringify(bad)} refused`);
});

t.test('bad values: a ConfigError naming the flag (and the variable)', async (t) => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--port', 'abc'], {}, /^--port: expected a port number/],
    [['--port', '70000'], {}, /^--port:/],
    [[], { WSENGINE_PORT: 'x' }, /^WSENGINE_PORT \(--port\):/],
    [['--max-message-size', '0'], {}, /^--max-message-size:/],
    [['--max-connections-per-user', '1.5'], {}, /^--max-connections-per-user:/],
    [['--heartbeat-interval', 'soon'], {}, /^--heartbeat-interval:/],
    [['--heartbeat-interval', '60s', '--heartbeat-timeout', '30s'], {}, /^--heartbeat-timeout: must be longer/],
    [['--slow-consumer', 'ignore'], {}, /^--slow-consumer: expected one of disconnect, drop/],
    [['--origins', 'a,,b'], {}, /^--origins:/],
    [['--history-max-bytes', '-1'], {}, /^--history-max-bytes: expected a size in bytes/],
    [[], { WSENGINE_HISTORY_TOPIC_MAX_BYTES: 'lots' }, /^WSENGINE_HISTORY_TOPIC_MAX_BYTES \(--history-topic-max-bytes\):/],
    [['--redis', 'http://x'], {}, /^--redis:/],
    [['--jwt-public-key', '/nonexistent.pem'], {}, /^--jwt-public-key: cannot read/],
    [['--no-such-flag'], {}, /^--no-such-flag: unknown flag/],
    [['--port'], {}, /^--port: missing value/],
    [['--port', '1', '--port', '2'], {}, /^--port: given twice/],
    [['stray'], {}, /unexpected argument "stray"/],
  ];
  for (const [argv, env, message] of cases) {
    t.throws(() => parseConfig({ argv: [...base, ...argv], env }), { name: 'ConfigError', message }, `${argv.join(' ')} ${JSON.stringify(env)}`);
  }
  t.throws(() => parseConfig({ argv: [] }), { message: /--jwt-secret or --jwt-public-key is required/ });
  t.throws(() => parseConfig({ argv: ['--jwt-secret', 'short'] }), { message: /^--jwt-secret: too short/ });
  t.throws(() => parseConfig({ argv: [...base, '--jwt-public-key', '/etc/hostname'] }), ConfigError);
  t.ok(parseConfig({ argv: ['--dev'] }), '--dev needs no secret');
});

t.test('--help lists every flag with its default and variable; the summary has no secrets', async (t) => {
  const help = helpText();
  for (const spec of OPTIONS) {
    t.match(help, `--${spec.flag}`, `--${spec.flag} listed`);
    t.match(help, envName(spec.flag), `${envName(spec.flag)} listed`);
  }
  t.match(help, /--heartbeat-interval <duration>\n\s+.*Default: 30s/);
  t.match(help, /--max-message-size <bytes>\n\s+.*Default: 64KiB/);
  t.match(help, /--history-max-bytes <bytes>\n\s+.*Default: 64MiB\. Env: WSENGINE_HISTORY_MAX_BYTES/);
  t.match(help, /--history-topic-max-bytes <bytes>\n\s+.*Default: 8MiB\. Env: WSENGINE_HISTORY_TOPIC_MAX_BYTES/);
  const parsed = parseConfig({ argv: [...base, '--api-key', 'k-123456', '--redis', 'redis://user:pw@localhost:6379'] });
  if (parsed.help) throw new Error('unexpected help');
  const summary = configSummary(parsed.config);
  t.notMatch(summary, SECRET);
  t.notMatch(summary, 'k-123456');
  t.notMatch(summary, ':pw@');
  t.match(summary, 'jwt-secret=set');
});

t.test('the bin: --help exits 0, a bad flag exits 2 with one line on stderr', async (t) => {
  const help = await runBin(['hub', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: wsengine hub/);
  const bad = await runBin(['hub', '--max-message-size', 'huge', '--jwt-secret', SECRET]);
  t.equal(bad.code, 2);
  t.equal(bad.stderr.trim().split('\n').length, 1, 'one line');
  t.match(bad.stderr, /^wsengine hub: --max-message-size: expected a size/);
  const env = await runBin(['hub'], { WSENGINE_JWT_SECRET: SECRET, WSENGINE_AUTH_DEADLINE: 'never' });
  t.equal(env.code, 2);
  t.match(env.stderr, /WSENGINE_AUTH_DEADLINE \(--auth-deadline\)/);
  const broker = await runBin(['hub', '--jwt-secret', SECRET, '--nats', 'http://127.0.0.1:4222']);
  t.equal(broker.code, 2, 'a broker URL of the wrong scheme is a configuration error');
  t.match(broker.stderr, /^wsengine hub: --nats: expected a URL/);
  const both = await runBin(['hub', '--jwt-secret', SECRET, '--nats', 'nats://127.0.0.1:4222', '--redis', 'redis://127.0.0.1:6379']);
  t.equal(both.code, 2, 'two brokers at once is a configuration error');
  t.match(both.stderr, /choose one broker/);
  const unknown = await runBin(['serve']);
  t.equal(unknown.code, 2);
});
