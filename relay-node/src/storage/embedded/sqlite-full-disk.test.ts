import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope, type MessageStore, randomId } from '@anode/shared';
import { createSqliteStore } from './sqlite-store.ts';

/**
 * The embedded store on a real full disk: a 6 MiB tmpfs (root on Linux only, as the NAT tests;
 * SQLite's max_page_count, which sqlite-store.test.ts uses, limits the database, not its log).
 */
const SIZE = '6m';

function tmpfsUnavailable(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs root on Linux (mounts a tmpfs)';
  const probe = mkdtempSync(join(tmpdir(), 'anode-tmpfs-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return undefined;
  } catch (error) {
    // Root that cannot mount (a container without CAP_SYS_ADMIN) is not a machine this test may
    // quietly pass on: it fails, saying why.
    throw new Error(`running as root, yet cannot mount a tmpfs for the full-disk test: ${(error as Error).message}`, {
      cause: error,
    });
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

async function onTmpfs(run: (dir: string) => Promise<void>): Promise<void> {
  const mnt = mkdtempSync(join(tmpdir(), 'anode-full-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${SIZE}`, 'tmpfs', mnt]);
  try {
    await run(join(mnt, 'data'));
  } finally {
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
}

/** Fill the disk with another file, up to the last byte it takes (in one write, then the rest). */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  try {
    const free = statfsSync(dirname(path));
    writeSync(fd, Buffer.alloc(free.bavail * free.bsize, 1));
    const chunk = Buffer.alloc(4096, 1);
    for (let size = chunk.length; size >= 1;) {
      try {
        writeSync(fd, chunk, 0, size);
      } catch {
        size = Math.floor(size / 2);
      }
    }
  } catch {
    // full already
  } finally {
    closeSync(fd);
  }
}

const files = async (dir: string) =>
  Object.fromEntries(await Promise.all((await readdir(dir)).map(async (f) => [f, (await stat(join(dir, f))).size])));

const MAX_MESSAGES = 200;
/** Longest a publish may be refused for before it is accepted again. */
const RECOVERY_MS = 5_000;

/**
 * Publish `count` messages one per commit, as a relay acks them: a refused one is sent again
 * (as clients do) until accepted, and retention sweeps after every MAX_MESSAGES stored (the relay
 * sweeps sooner than retention_sweep_ms, 60 s, only when messages were stored: not while refused).
 * Returns the acked ids, in order, and the longest refusal.
 */
async function publish(store: MessageStore, count: number) {
  const clock = createHybridClock('full');
  const acked: string[] = [];
  let longest = 0;
  let refusals = 0;
  for (let i = 0; i < count; i++) {
    const message: Envelope = {
      id: randomId(),
      topic: 'full.t',
      cursor: clock.next(),
      source: 's',
      ts: Date.now(),
      data: `${i}:${'x'.repeat(200)}`,
    };
    const refusedAt = Date.now();
    for (;;) {
      try {
        await store.append([message]);
        break;
      } catch (error) {
        refusals++;
        const lastError = (error as Error).message;
        assert.match(lastError, /full/);
        const refused = Date.now() - refusedAt;
        assert.ok(
          refused < RECOVERY_MS,
          `publish ${i} still refused after ${refused} ms (${refusals} refusals, ${acked.length} acked): ${lastError}`,
        );
        await sleep(50);
      }
    }
    longest = Math.max(longest, Date.now() - refusedAt);
    acked.push(message.id);
    if (acked.length % MAX_MESSAGES === 0) await store.sweep().catch(() => {}); // as node.ts: logged, tried again
  }
  return { acked, longest, refusals };
}

/** Every acked message that retention keeps is read back. */
async function assertKept(store: MessageStore, acked: string[]) {
  const read = (await store.history('full.t', { limit: 10_000 })).map((m) => m.id);
  assert.ok(read.length >= MAX_MESSAGES, `${read.length} messages kept`);
  assert.deepEqual(read.slice(-MAX_MESSAGES), acked.slice(-MAX_MESSAGES), 'the newest acked messages are kept');
}

const unavailable = tmpfsUnavailable();
describe(`embedded store on a full disk (a ${SIZE} tmpfs)`, { skip: unavailable }, () => {
  for (const fsync of [true, false]) {
    it(`fsync ${fsync}: retention holds the data, and the log does not fill the disk for good`, async () => {
      await onTmpfs(async (dir) => {
        const store = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: MAX_MESSAGES }, fsync });
        try {
          const { acked, longest, refusals } = await publish(store, 2_000);
          await assertKept(store, acked);
          const sizes = await files(dir);
          assert.ok(
            (sizes['messages.sqlite-wal'] ?? 0) < 4 * 1024 * 1024,
            `the log stays small: ${JSON.stringify(sizes)}`,
          );
          assert.ok(longest < RECOVERY_MS, `longest refusal ${longest} ms, ${refusals} refusals`);
        } finally {
          await store.close();
        }
      });
    });

    it(`fsync ${fsync}: another file fills the disk once retention holds the data: publishes go on`, async () => {
      await onTmpfs(async (dir) => {
        const store = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: MAX_MESSAGES }, fsync });
        try {
          // Retention holds the data at its size: from here on, only the log needs room.
          const before = await publish(store, 600);
          fill(join(dir, '..', 'filler'));
          const { acked, longest, refusals } = await publish(store, 1_000);
          await assertKept(store, [...before.acked, ...acked]);
          assert.ok(longest < RECOVERY_MS, `longest refusal ${longest} ms, ${refusals} refusals`);
          const health = await store.health();
          // Health says not ok for 10 s after a refused write; ok if none was refused.
          if (refusals === 0) assert.equal(health.ok, true, health.detail);
        } finally {
          await store.close();
        }
      });
    });

    it(`fsync ${fsync}: another file takes the room the log gave back: publishes go on`, async () => {
      await onTmpfs(async (dir) => {
        const store = createSqliteStore({ dataDir: dir, retention: { maxAgeMs: 0, maxMessages: MAX_MESSAGES }, fsync });
        try {
          const before = await publish(store, 600);
          fill(join(dir, '..', 'filler-1'));
          // The writer thread cuts the log within a second of the disk filling (sqlite-writer-thread.ts)...
          await sleep(2_500);
          // ...and another process takes that room: the reserve file is all that is left.
          fill(join(dir, '..', 'filler-2'));
          // Refused for good with fsync off before: each small write, on the store's own
          // connection, failed there, and the thread's cut of an empty log freed nothing. Fewer
          // than retention's limit: the rows past it need pages that only a sweep frees, and a
          // sweep needs room in the log too (once the reserve is spent, an operator's turn).
          const { acked, longest, refusals } = await publish(store, 100);
          await assertKept(store, [...before.acked, ...acked]);
          assert.ok(longest < RECOVERY_MS, `longest refusal ${longest} ms, ${refusals} refusals`);
        } finally {
          await store.close();
        }
      });
    });
  }
});
