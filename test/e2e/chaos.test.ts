import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { labUnavailable } from '../chaos/lab.ts';

/**
 * The chaos run at CI size: two minutes of faults with a fixed seed (the documented full size
 * is `npm run chaos -- --minutes 30`). It must report no loss and exit 0.
 */
const CLI = fileURLToPath(new URL('../chaos/cli.ts', import.meta.url));
const SEED = '14';

describe('chaos: five relays, the edge, load and a seeded fault schedule', () => {
  it('loses no acked message, delivers each once, and the stores converge', { timeout: 20 * 60_000 }, async () => {
    const unavailable = labUnavailable();
    assert.equal(unavailable, undefined, `the chaos run cannot start here: ${unavailable}`);
    const child = spawn(process.execPath, [CLI, '--minutes', '2', '--seed', SEED, '--settle-s', '600'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    for (const stream of [child.stdout, child.stderr]) {
      stream?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        process.stderr.write(chunk); // progress, and the report, in the test log
      });
    }
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.match(output, /== chaos report/, 'the run got as far as its report');
    assert.match(output, /lost \(store\)\s+0\n/);
    assert.match(output, /lost \(subscribers\)\s+0\n/);
    assert.match(output, /stores converged\s+yes/);
    assert.equal(code, 0, 'the chaos run passed');
  });
});
