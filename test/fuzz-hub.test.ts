/**
 * The hub's fuzz targets, briefly, with fixed seeds: the parser/dispatcher (a fixed number of inputs: no throw, an error
 * reply for every refused message, bounded heap) and the request order (a fixed number of batches: replies in order,
 * subscriptions and deliveries as a sequential model of each client's requests says).
 */
import t from 'tap';
import { runHubCampaign, runHubOrderCampaign } from '../fuzz/hub.js';

t.test('hub message fuzzing finds no violation', async (t) => {
  // A fixed number of seeded inputs, not a time box: the same run whatever the machine's load (a few seconds idle).
  const INPUTS = 1500;
  const stats = await runHubCampaign({ iterations: INPUTS, seed: 0x4b5b0001 });
  t.comment(`${stats.iterations} inputs, ${stats.errorsReplied} error replies, heap growth ${(stats.heapGrowthBytes / 1e6).toFixed(1)} MB`);
  t.equal(stats.iterations, INPUTS, `all ${INPUTS} inputs were fed`);
  t.ok(stats.errorsReplied > 50, 'many inputs were refused with an error reply');
  t.same(stats.violations, [], 'no violations');
  t.ok(stats.heapGrowthBytes < 64e6, 'heap growth bounded');
});

t.test('hub request-order fuzzing finds no violation', async (t) => {
  // A fixed number of seeded batches (the requests are the same every run; their timing is not): a few seconds idle.
  const BATCHES = 200;
  const stats = await runHubOrderCampaign({ batches: BATCHES, seed: 0x4b5b0002 });
  t.comment(
    `${stats.batches} batches, ${stats.requests} requests, ${stats.publishes} publishes, ${stats.deliveries} deliveries, ` +
      `${stats.selfChecks} own-publish and ${stats.crossChecks} cross-client checks, ${(stats.elapsedMs / 1000).toFixed(1)} s`,
  );
  t.same(stats.violations, [], 'no violations');
  t.equal(stats.batches, BATCHES, `all ${BATCHES} batches ran`);
  t.ok(stats.requests > 2000 && stats.publishes > 300 && stats.deliveries > 200, 'many requests, publishes and deliveries');
  t.ok(stats.selfChecks > 300 && stats.crossChecks > 300, 'many determined delivery checks');
});
