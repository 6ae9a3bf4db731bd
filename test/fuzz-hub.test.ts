/** The hub's parser/dispatcher fuzz target, briefly (a fixed number of inputs), with a fixed seed: no throw, an error reply for every refused message, bounded heap. */
import t from 'tap';
import { runHubCampaign } from '../fuzz/hub.js';

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
