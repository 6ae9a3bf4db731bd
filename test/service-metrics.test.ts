/**
 * `GET /metrics`: a strict check of the exposition format, and each series operators expect — traffic (bytes,
 * messages by type), the publish → socket-write latency histogram, per-tenant connections, history bytes, replays
 * and waiting requests, and the process series under Prometheus' standard names.
 */
import t from 'tap';
import { renderMetrics } from '../lib/service/metrics.js';
import { readExposition } from './helpers/prom.js';
import { api, serviceArgs, startService, tokenFor } from './helpers/service.js';
import { openSocket } from './helpers/socket.js';

t.test('the format checker finds what is wrong (it can fail)', async (t) => {
  const bad = [
    '# TYPE a_total counter',
    'a_total{x="1"} 1',
    'a_total{x="1"} 2',
    'b 3',
    '# TYPE h histogram',
    'h_bucket{le="1"} 5',
    'h_bucket{le="+Inf"} 4',
    'h_count 4',
    '# TYPE c counter',
    'c 1',
    'a_total{x="2"} oops',
  ].join('\n');
  const { problems } = readExposition(bad);
  for (const want of [/twice/, /without a TYPE/, /not cumulative/, /does not end in _total/, /contiguous/, /bad value/, /newline/]) {
    t.ok(problems.some((p) => want.test(p)), `reports ${want}`);
  }
  t.same(readExposition(renderMetrics([{ name: 'x_total', type: 'counter', help: 'h', samples: [{ labels: { q: 'a"b\\c\nd' }, value: 1 }] }])).problems, [], 'escaped label values read back');
});

t.test('the service exposes well-formed metrics with every expected series', async (t) => {
  const service = await startService(serviceArgs());
  t.teardown(() => service.stop('SIGKILL'));
  const s = openSocket(service.wsUrl, ['bearer', tokenFor('alice', { tenants: ['acme'] })]);
  await s.opened;
  s.send({ type: 'subscribe', data: { topic: 'room.1', tenant: 'acme' }, request_id: 1 });
  await s.next((m) => m.request_id === 1);
  for (let i = 0; i < 3; i++) await api(service, 'POST', '/api/publish', { tenant: 'acme', topic: 'room.1', type: 'chat', data: { i } });
  await s.next((m) => m.type === 'chat' && m.data.i === 2);
  const res = await api(service, 'GET', '/metrics');
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type') ?? '', /text\/plain/);
  const { problems, samples, types } = readExposition(res.body as string);
  t.same(problems, [], 'no format problem');
  const value = (name: string, labels: Record<string, string> = {}): number | undefined =>
    samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;
  for (const [name, type] of [
    ['wsengine_bytes_in_total', 'counter'],
    ['wsengine_bytes_out_total', 'counter'],
    ['wsengine_messages_received_total', 'counter'],
    ['wsengine_delivery_latency_seconds', 'histogram'],
    ['wsengine_tenant_connections', 'gauge'],
    ['wsengine_history_bytes', 'gauge'],
    ['wsengine_replays', 'gauge'],
    ['wsengine_replays_refused_total', 'counter'],
    ['wsengine_requests_pending', 'gauge'],
    ['wsengine_backplane_up', 'gauge'],
    ['process_cpu_seconds_total', 'counter'],
    ['process_resident_memory_bytes', 'gauge'],
    ['process_heap_bytes', 'gauge'],
    ['process_start_time_seconds', 'gauge'],
    ['nodejs_eventloop_lag_seconds', 'gauge'],
    ['nodejs_gc_duration_seconds', 'histogram'],
  ]) {
    t.equal(types.get(name), type, `${name} is a ${type}`);
  }
  t.ok(value('wsengine_bytes_in_total')! > 0, 'bytes in counted');
  t.ok(value('wsengine_bytes_out_total')! > 0, 'bytes out counted');
  t.equal(value('wsengine_messages_received_total', { type: 'subscribe' }), 1, 'one subscribe received');
  t.equal(value('wsengine_delivery_latency_seconds_count'), 3, 'three publications delivered, each observed once');
  t.equal(value('wsengine_tenant_connections', { tenant: 'acme' }), 1, 'one connection of tenant acme');
  t.ok(value('wsengine_history_bytes')! > 0, 'history bytes held');
  t.ok(value('process_resident_memory_bytes')! > 10e6, 'RSS in bytes');
  t.ok(value('process_cpu_seconds_total')! > 0, 'CPU seconds');
  t.equal(value('wsengine_backplane_up'), 1, 'the in-memory backplane is up');
  s.ws.close();
});

t.test('the eviction log line names the evicted connection\'s user, and the newcomer only as by_remote', async (t) => {
  const service = await startService(serviceArgs(['--max-connections-per-user', '1']));
  t.teardown(() => service.stop('SIGKILL'));
  const first = openSocket(service.wsUrl, ['bearer', tokenFor('erin')]);
  await first.opened;
  const second = openSocket(service.wsUrl, ['bearer', tokenFor('erin')]);
  await second.opened;
  const closed = await first.closed;
  t.equal(closed.code, 4429, 'the oldest connection is closed with 4429');
  await service.waitForOutput(/event=connection_closed_by_policy[^\n]*reason=connection_limit/);
  const line = service.output().split('\n').find((l) => l.includes('reason=connection_limit'))!;
  t.match(line, /user=erin/, 'names the user');
  t.match(line, /connection=\S+/, 'names the closed connection');
  t.match(line, /by_remote=/, 'the newcomer\'s address is marked as such');
  t.notMatch(line, / remote=/, 'no unqualified remote that would name the wrong connection');
  second.ws.close();
});
