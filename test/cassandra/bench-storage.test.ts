import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StorageResult } from '../bench/storage.ts';
import { storageScenario } from '../bench/storage.ts';
import { findJava } from './cassandra-server.ts';

// Benchmarks are not tests: this only proves the storage scenario runs end to end against a real
// Apache Cassandra 5.0 at a tiny size, the store and its raw-driver baselines alike. No timing is
// asserted. A Cassandra that cannot start fails this test (the scenario reports it as NOT
// MEASURED, which the assertions below refuse); only a machine without Java outside CI skips it.
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;

describe('storage benchmark scenario on Cassandra', { skip }, () => {
  it('measures appends and reads of the Cassandra store and the raw-driver baselines', async () => {
    const result = await storageScenario.run({
      quick: false,
      runs: 1,
      flags: { batches: '1,10', messages: '40', cassandra: 'true' },
      log: (line) => console.error(line),
    });
    const notes = (result.notes ?? []).join('\n');
    assert.doesNotMatch(notes, /NOT measured/i, `Cassandra was not measured:\n${notes}`);
    const data = result.data as StorageResult[];
    for (const batch of [1, 10]) {
      for (const target of [
        'anode-embedded',
        'sqlite-baseline',
        'anode-cassandra',
        'anode-cassandra-keyed',
        'cassandra-baseline',
        'cassandra-lwt-baseline',
      ]) {
        const r = data.find((d) => d.batch === batch && d.target === target);
        assert.ok(r, `${target} at batch ${batch} measured:\n${notes}`);
        assert.ok(r.appends_per_s > 0, `${target} at batch ${batch}: appends/s`);
        assert.ok(Number.isFinite(r.read_p50_ms), `${target} at batch ${batch}: reads`);
      }
    }
    assert.ok(
      result.rows.some((row) => row.includes('| anode-cassandra |')),
      'the table has the Cassandra rows',
    );
  });
});
