import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EdgePathResult, EdgePublisherResult } from '../bench/edge.ts';
import type { EdgeSocketsResult } from '../bench/edge-sockets.ts';
import { edgeScenario } from '../bench/edge.ts';
import type { MeshResult } from '../bench/mesh.ts';
import { meshScenario } from '../bench/mesh.ts';

// Benchmarks are not tests: this only proves the mesh and edge scenarios run end to end at a
// tiny size and deliver everything (no timing is asserted). The mesh saturation search has its
// own run in bench-smoke.test.ts.
const context = (flags: Record<string, string | boolean>) => ({ quick: true, runs: 1, flags, log: () => {} });

describe('benchmark scenarios run: mesh and edge', () => {
  it('mesh: 3 relays and the single-relay baseline; every relay gets every message, duplicates counted', async () => {
    const result = await meshScenario.run(context({ relays: '3', messages: '20', rate: '100', 'no-saturation': true }));
    const { medians } = result.data as { medians: MeshResult[] };
    assert.deepEqual(
      medians.map((r) => [r.target, r.relays]),
      [
        ['single-relay', 1],
        ['mesh', 3],
      ],
    );
    for (const r of medians) {
      assert.equal(r.reach, 1, `${r.relays} relays: every relay's subscriber got every message`);
      assert.equal(r.repeats, 0, `${r.relays} relays: no subscriber saw a message twice`);
      assert.ok(Number.isFinite(r.p99_ms) && r.p99_ms >= r.p50_ms, 'latencies present');
    }
    const [single, mesh] = medians as [MeshResult, MeshResult];
    assert.equal(single.copies_per_message, 0, 'no gossip without a mesh');
    assert.ok(mesh.copies_per_message >= 2, 'every other relay received at least one gossip copy');
    assert.ok(Number.isFinite(mesh.duplicates_per_message) && mesh.duplicates_per_message >= 0);
    assert.equal(result.rows.length, 4, 'header, separator and two rows');
  });

  it('edge: publish and subscribe through the Worker and on the relay; everything everywhere, acks counted', async () => {
    const result = await edgeScenario.run(context({ messages: '20', rate: '100', publishes: '50' }));
    const { paths, publishers } = result.data as { paths: EdgePathResult[]; publishers: EdgePublisherResult[] };
    assert.deepEqual(
      paths.map((p) => p.path),
      ['relay→relay', 'relay→edge', 'edge→edge', 'edge→relay'],
    );
    for (const p of paths) {
      assert.equal(p.reach, 1, `${p.path}: every message arrived`);
      assert.equal(p.repeats, 0, `${p.path}: none twice`);
      assert.ok(Number.isFinite(p.p99_ms));
    }
    for (const p of publishers) {
      assert.ok(Number.isFinite(p.acks_per_s) && p.acks_per_s > 0, `${p.publisher}: acks counted`);
      assert.ok(Number.isFinite(p.relay_delivered_per_s), `${p.publisher}: every publish reached the relay`);
    }
    assert.ok(result.rows.some((row) => row.startsWith('| edge→relay')));
    const { sockets } = result.data as { sockets: EdgeSocketsResult[] };
    assert.deepEqual(
      sockets.map((s) => s.case),
      [
        '100 topics, one socket (edge→edge)',
        'a pattern over 10 topics (edge→edge)',
        'a pattern over 10 topics (relay→edge)',
      ],
    );
    for (const s of sockets) {
      assert.equal(s.reach, 1, `${s.case}: every message arrived`);
      assert.equal(s.repeats, 0, `${s.case}: none twice`);
    }
  });
});
