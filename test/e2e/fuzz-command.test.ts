import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';

/**
 * CI runs the fuzz command (`npm run fuzz`) at 20,000 frames and bodies; the full run is
 * `npm run fuzz -- --frames 1000000` (docs/security.md). The command exits non-zero on any
 * failed check; this also reads its report, so a silent pass with nothing done cannot slip by.
 */
const RUN = fileURLToPath(new URL('../fuzz/run.ts', import.meta.url));
const FRAMES = 20_000;

it(`the fuzz command: ${FRAMES} malformed frames and bodies, 0 crashes, every frame answered, nothing lost`, async (t) => {
  const child = spawn(process.execPath, [RUN, '--frames', String(FRAMES), '--progress-s', '30'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.diagnostic(err.trim().split('\n').slice(-3).join(' | '));
  const report = JSON.parse(out) as {
    ok: boolean;
    crashes: number;
    mismatches: number;
    mismatch_examples: string[];
    ws_frames: number;
    http_bodies: number;
    close_cases: { over_hard_cap: number; unfinished_frame: number };
    errors_by_code: Record<string, number>;
    watcher: { published: number; received: number; missed: number; out_of_order: boolean };
    history: { checked: number; missing: number };
  };
  t.diagnostic(JSON.stringify({ ...report, mismatch_examples: report.mismatch_examples.slice(0, 3) }));
  assert.equal(report.crashes, 0);
  assert.deepEqual(report.mismatch_examples, []);
  assert.equal(report.mismatches, 0);
  assert.equal(report.ws_frames + report.http_bodies, FRAMES);
  assert.ok(report.close_cases.over_hard_cap >= 1 && report.close_cases.unfinished_frame >= 1);
  assert.ok((report.errors_by_code.bad_frame ?? 0) > FRAMES / 4, 'most frames were malformed');
  assert.ok(report.watcher.published > 0 && report.watcher.missed === 0 && !report.watcher.out_of_order);
  assert.ok(report.history.checked > 0 && report.history.missing === 0);
  assert.equal(report.ok, true);
  assert.equal(code, 0);
});
