import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { dieWithOwner, WATCH_EVERY_S } from '../tools/die-with-owner.ts';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(check: () => boolean, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`${what} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A real process standing for the JVM: in its own group, as startCassandra spawns Cassandra. */
function longRunning() {
  const child = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
  child.unref();
  return child.pid as number;
}

test('a child started in its own group is killed once its owner is SIGKILLed', async (t) => {
  // The owner: a process of its own (killing this test's process would end the test).
  const owner = spawn('sleep', ['600'], { stdio: 'ignore' });
  const orphan = longRunning();
  t.after(() => {
    owner.kill('SIGKILL');
    if (alive(orphan)) process.kill(orphan, 'SIGKILL');
  });
  dieWithOwner(orphan, owner.pid as number);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(alive(orphan), 'alive while its owner is');
  owner.kill('SIGKILL');
  await until(() => !alive(orphan), 'the child killed after its owner died', WATCH_EVERY_S * 1000 * 3);
});

test('the watcher ends by itself when the child exits first, killing nothing', async () => {
  const child = longRunning();
  dieWithOwner(child);
  const watchers = () => {
    const ps = spawn('pgrep', ['-f', `anode-die-with-owner ${process.pid} ${child}`]);
    return new Promise<number>((resolve) => {
      let out = '';
      ps.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      ps.on('close', () => resolve(out.trim().split('\n').filter(Boolean).length));
    });
  };
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(await watchers(), 1, 'one watcher for the child');
  process.kill(child, 'SIGKILL');
  const end = Date.now() + WATCH_EVERY_S * 1000 * 3;
  while ((await watchers()) > 0) {
    if (Date.now() > end) assert.fail('the watcher still runs after its child exited');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});
