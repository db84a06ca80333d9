import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runFanout } from '../bench/fanout.ts';
import { runStorage } from '../bench/storage.ts';

// Benchmarks are not tests: this only proves each landed scenario runs end to end at a tiny
// size (no timing is asserted).
describe('benchmark scenarios run', () => {
  it('fan-out runs against aNode and the bare-ws baseline and reaches every subscriber', async () => {
    for (const target of ['ws-baseline', 'anode'] as const) {
      const result = await runFanout(target, { subscribers: 5, rate: 50, seconds: 0.5, workers: 1 });
      assert.equal(result.reach, 1, `${target} delivered everything`);
      assert.ok(Number.isFinite(result.p99_ms));
    }
  });

  it('storage runs against the embedded store and raw SQLite', async () => {
    const results = await runStorage(10, 100);
    assert.deepEqual(
      results.map((r) => r.target),
      ['anode-embedded', 'sqlite-baseline'],
    );
    assert.ok(results.every((r) => r.appends_per_s > 0));
  });
});
