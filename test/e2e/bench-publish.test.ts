import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { publishCases, runPublish } from '../bench/publish.ts';

// Benchmarks are not tests: this only proves the publish scenario runs end to end at a tiny size
// and measures what it says (no timing is asserted).
describe('publish benchmark scenario runs', () => {
  it('measures acks, latency and server CPU for every case against the floor and the relay, fsync off and on', async () => {
    const cases = publishCases([1, 3], 4, 4, 10);
    const results = await runPublish({
      fsync: [false, true],
      cases,
      seconds: 0.5,
      warmupSeconds: 0.2,
      runs: 1,
      log: () => {},
    });
    assert.deepEqual(
      results.map((r) => `${r.fsync} ${r.case} ${r.target}`),
      [false, true].flatMap((fsync) =>
        ['ws-1', 'ws-3', 'http-single', 'http-batched'].flatMap((c) => [`${fsync} ${c} floor`, `${fsync} ${c} anode`]),
      ),
    );
    for (const r of results) {
      const label = `fsync ${r.fsync}, ${r.case}, ${r.target}`;
      assert.ok(r.acks > 0 && r.acks_per_s > 0, `${label}: acknowledged publishes (${r.acks})`);
      if (r.case === 'http-batched') assert.equal(r.acks % 10, 0, `${label}: whole bodies of 10 acknowledged`);
      assert.ok(r.p50_ms > 0 && r.p50_ms <= r.p99_ms && Number.isFinite(r.p99_ms), `${label}: latency measured`);
      assert.ok(r.cpu_us_per_publish >= 0 && Number.isFinite(r.cpu_us_per_publish), `${label}: server CPU measured`);
    }
  });
});
