import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

/**
 * Bad input on the `anode` command line, as a user types it: a real process each time. An option
 * followed by another option (`--port $PORT --data-dir x` with PORT unset) was answered "option
 * '--port' argument is ambiguous", Node's first sentence without its advice.
 */
const CLI = fileURLToPath(new URL('../../bin/anode.ts', import.meta.url));

function anode(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ANODE_JWT_SECRET: '', ANODE_JWT_SECRET_FILE: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`anode ${args.join(' ')} still running after 60 s`));
    }, 60_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('anode usage errors', () => {
  it('an option left without a value by an empty variable says so and how to give one', async () => {
    for (const [args, option] of [
      [['relay', '--port', '--data-dir', '.data/relay'], '--port'],
      [['token', '--secret', '--pub', 'demo.>'], '--secret'],
    ] as const) {
      const run = await anode([...args]);
      assert.equal(run.code, 2, run.stderr);
      assert.equal(run.stdout, '');
      assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
      assert.ok(
        run.stderr.startsWith(`anode: ${args[0]}: ${option} has no value: the word after it starts with a dash (`),
        run.stderr,
      );
      assert.match(run.stderr, new RegExp(`an empty shell variable does not.*${option}=-value`));
    }
  });

  it('a negative number is taken in the documented form', async () => {
    // --port=-1 reaches the config check, which names the key and the source of the value.
    const run = await anode(['relay', '--port=-1']);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /^anode: invalid config: port: .*\(from --port\)/);
  });
});
