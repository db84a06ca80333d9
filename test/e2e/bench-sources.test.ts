import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SourcesResult } from '../bench/sources.ts';
import { sourcesScenario } from '../bench/sources.ts';

// Benchmarks are not tests: this only proves the sources scenario runs end to end at a tiny size
// (feed server, relay with sources from its config file, subscriber, and the bare-poller
// baseline, each its own process). No timing is asserted.
describe('sources benchmark scenario runs', () => {
  it('20 polled sources: every item produced in the window reaches the subscriber, and the poller', async () => {
    const result = await sourcesScenario.run({
      quick: false,
      runs: 1,
      flags: { sources: '20', 'interval-ms': '200', seconds: '1' },
      log: (line) => console.error(line),
    });
    const data = result.data as SourcesResult[];
    assert.deepEqual(
      data.map((r) => r.target),
      ['poller-baseline', 'anode'],
    );
    for (const r of data) {
      assert.ok(r.items_expected >= 20 * 4, `${r.target}: ${r.items_expected} items produced in the window`);
      assert.equal(r.items_received, r.items_expected, `${r.target}: every item arrived`);
      assert.equal(r.reach, 1);
      assert.equal(r.duplicates, 0, `${r.target}: nothing twice`);
      assert.ok(Number.isFinite(r.lag_p50_ms) && Number.isFinite(r.lag_p99_ms), `${r.target}: lag measured`);
      assert.ok(Number.isFinite(r.cpu_us_per_item), `${r.target}: CPU measured`);
      assert.equal(r.failing_sources, 0, `${r.target}: no failing source`);
    }
    const anode = data[1] as SourcesResult;
    assert.equal(anode.sources_ok, 20, 'every source ok in /v1/status');
    assert.ok(Number.isFinite(anode.feed_cpu_pct) && Number.isFinite(anode.subscriber_cpu_pct));
    assert.equal(result.rows.length, 4, 'header, separator, one row per target');
    assert.match(result.rows[3] as string, /\| 20 \| 200 \| anode \|/);
  });
});
