import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createHybridClock, type Envelope, messageId } from '@anode/shared';
import { createLogger } from '../../logger.ts';
import { createSqliteStore } from '../embedded/sqlite-store.ts';
import { createSpoolingStore, RECENT_BYTES, RECENT_IDS } from './spooling-store.ts';

describe('spooling store memory', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('remembers recent copies up to RECENT_BYTES of data, not RECENT_IDS messages of any size', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-spool-recent-'));
    dirs.push(dir);
    const remote = createSqliteStore({ dataDir: join(dir, 'store'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    const spool = createSpoolingStore(remote, {
      dataDir: join(dir, 'spool'),
      drainIntervalMs: 60_000,
      log: createLogger('silent'),
    });
    const clock = createHybridClock('recent');
    const mib = 'x'.repeat(1024 * 1024);
    // Copies from elsewhere (gossip, catch-up): remembered to answer them again while the store is away.
    const count = RECENT_BYTES / mib.length + 8;
    assert.ok(count < RECENT_IDS, 'within the count bound: only bytes can push the first out');
    const gossiped = Array.from({ length: count }, (): Envelope => ({
      id: messageId(),
      topic: 'spool.recent',
      cursor: clock.next(),
      source: 's',
      ts: 1,
      data: mib,
    }));
    for (const m of gossiped) await spool.append([m]);

    await remote.close(); // the remote store is away from now on: appends spool
    const [first] = await spool.append([gossiped[0] as Envelope]);
    const [last] = await spool.append([gossiped.at(-1) as Envelope]);
    assert.deepEqual(last, { envelope: gossiped.at(-1), inserted: false }, 'the newest copy is remembered');
    assert.equal(first?.inserted, true, `the oldest was let go: ${count} MiB of copies is past RECENT_BYTES`);
    assert.equal(spool.spoolDepth, 1);
    await spool.close();
  });
});
