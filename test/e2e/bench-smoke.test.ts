import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planConnections, runConnections } from '../bench/connections.ts';
import { runFanout } from '../bench/fanout.ts';
import { meshSaturationTable } from '../bench/mesh.ts';
import { runSaturation } from '../bench/saturation.ts';
import { runRetention } from '../bench/retention.ts';
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

  it('saturation takes its steps against aNode and the bare-ws baseline', async () => {
    for (const target of ['ws-baseline', 'anode'] as const) {
      const result = await runSaturation(target, {
        subscribers: 5,
        startRate: 50,
        seconds: 0.5,
        precision: 2,
        maxSteps: 2,
      });
      assert.equal(result.steps.length, 2, `${target}: two steps`);
      assert.ok([0, 25, 50, 100].includes(result.max_rate), `${target}: the highest rate held is a rate tried`);
      for (const step of result.steps) {
        assert.ok(step.reach > 0 && step.reach <= 1, `${target} at ${step.rate}/s delivered (reach ${step.reach})`);
        assert.ok(Number.isFinite(step.p99_ms), `${target} at ${step.rate}/s measured latency`);
      }
    }
  });

  it('mesh saturation searches a single relay and a 3-relay mesh, reporting CPU, copies and drops', async () => {
    const { rows, data } = await meshSaturationTable({
      sizes: [3],
      startRate: 50,
      seconds: 1,
      precision: 2,
      maxSteps: 2,
      runs: 1,
      log: () => {},
    });
    assert.deepEqual(
      data.map((r) => r.relays),
      [1, 3],
    );
    assert.equal(rows.length, 4, 'a header, a separator and one row per cluster');
    for (const result of data) {
      assert.ok(result.steps.length >= 1 && result.steps.length <= 2, `${result.relays} relays: took its steps`);
      assert.ok(
        [0, 25, 50, 100].includes(result.max_rate),
        `${result.relays} relays: the highest rate held is a rate tried`,
      );
      for (const step of result.steps) {
        assert.ok(step.reach > 0 && step.reach <= 1, `${result.relays} relays at ${step.rate}/s delivered`);
        assert.ok(Number.isFinite(step.p99_ms) && Number.isFinite(step.cpu_us_per_message_per_relay));
        assert.ok(step.dropped >= 0 && step.caught_up >= 0);
        if (result.relays === 3) assert.ok(step.copies_per_message > 0, 'gossip carried copies');
      }
    }
  });

  it('connections opens idle subscribers on aNode and the bare-ws baseline and measures memory', async () => {
    const plan = planConnections(200);
    assert.equal(plan.connections, 200);
    for (const target of ['ws-baseline', 'anode'] as const) {
      const result = await runConnections(target, plan, { settleMs: 100 });
      assert.equal(result.connections, 200);
      assert.ok(result.rss_after_mb > 0 && result.rss_before_mb > 0, `${target}: RSS measured`);
      assert.ok(Number.isFinite(result.rss_per_connection_kb), `${target}: RSS per connection`);
      assert.ok(result.connect_per_s > 0, `${target}: connected`);
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

  it('retention samples one busy topic and the relay CPU, with and without a limit', async () => {
    for (const limit of [500, 0]) {
      const result = await runRetention({ rate: 1_000, seconds: 3, limit, sweepMs: 60_000, log: () => {} });
      assert.ok(result.sent > 0 && result.samples.length >= 3, `limit ${limit}: published and sampled`);
      assert.ok(result.peak_messages > 0 && result.peak_messages <= result.sent, `limit ${limit}: sizes read`);
      assert.ok(result.cpu_us_per_message > 0, `limit ${limit}: CPU measured`);
      if (limit === 0) assert.equal(result.sweeps, 0, 'no limit: nothing deleted');
    }
  });
});
