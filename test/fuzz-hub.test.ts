/** The hub's parser/dispatcher fuzz target, briefly, with a fixed seed: no throw, an error reply for every refused message, bounded heap. */
import t from 'tap';
import { runHubCampaign } from '../fuzz/hub.js';

t.test('hub message fuzzing finds no violation', async (t) => {
  const stats = await runHubCampaign({ seconds: 3, seed: 0x4b5b0001 });
  t.comment(`${stats.iterations} inputs, ${stats.errorsReplied} error replies, heap growth ${(stats.heapGrowthBytes / 1e6).toFixed(1)} MB`);
  t.ok(stats.iterations > 200, `a meaningful number of inputs (${stats.iterations})`);
  t.ok(stats.errorsReplied > 50, 'many inputs were refused with an error reply');
  t.same(stats.violations, [], 'no violations');
  t.ok(stats.heapGrowthBytes < 64e6, 'heap growth bounded');
});
