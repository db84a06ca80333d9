import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { buildLab, destroyLab, labUnavailable, planLab } from '../chaos/lab.ts';

/**
 * A network partition that heals (network namespaces, nftables): two halves of a four-relay mesh
 * each accept and deliver their own messages while cut off from each other; after the heal every
 * store holds both halves, every subscriber that stayed connected receives the other half once,
 * and a subscriber resuming on the other half from before the partition misses nothing.
 */
const SCENARIO = fileURLToPath(new URL('../chaos/partition-heal.ts', import.meta.url));

describe('a healed partition', () => {
  it(
    'converges the stores and delivers both halves to every subscriber, nothing lost',
    { timeout: 6 * 60_000 },
    async () => {
      const unavailable = labUnavailable();
      assert.equal(unavailable, undefined, `the partition test cannot start here: ${unavailable}`);
      const plan = planLab(4);
      buildLab(plan);
      try {
        const child = spawn('ip', ['netns', 'exec', plan.clients, process.execPath, SCENARIO], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, ANODE_CHAOS_LAB: JSON.stringify(plan) },
        });
        let output = '';
        child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
        const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
        assert.equal(code, 0, output);
        const report = JSON.parse(output.trim().split('\n').at(-1) ?? '{}') as Record<string, number | number[]>;
        process.stderr.write(`partition heal: ${JSON.stringify(report)}\n`);
        const perHalf = report.per_half as number;
        assert.deepEqual(report.crossed_during_partition, [0, 0], 'the halves were really cut off');
        // "before", both halves, and "after": on every replica.
        assert.deepEqual(report.store_sizes, Array(4).fill(2 * perHalf + 2));
        assert.deepEqual(report.store_duplicates, [0, 0, 0, 0]);
        assert.deepEqual(report.subscriber_missing, [0, 0, 0, 0]);
        assert.deepEqual(report.subscriber_duplicates, [0, 0, 0, 0]);
        assert.equal(report.resumed_missing, 0);
        assert.equal(report.resumed_duplicates, 0);
      } finally {
        destroyLab(plan);
      }
    },
  );
});
