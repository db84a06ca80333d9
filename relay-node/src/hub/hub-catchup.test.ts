import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock, type MessageStore } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { createSqliteStore } from '../storage/embedded/sqlite-store.ts';
import { createHub, type Subscriber } from './hub.ts';

/**
 * A store whose commits are readable before `append` resolves (as with a writer thread or
 * Cassandra): `nextCommit()` resolves once the next append is in the store, `ms` before its ack.
 */
function slowAcking(store: MessageStore, ms: number): MessageStore & { nextCommit(): Promise<void> } {
  let committed: (() => void) | undefined;
  return {
    ...store,
    nextCommit: () => new Promise<void>((resolve) => (committed = resolve)),
    async append(...args: Parameters<MessageStore['append']>) {
      const results = await store.append(...args);
      committed?.();
      await new Promise((r) => setTimeout(r, ms));
      return results;
    },
  };
}

const ids = (frames: string[]) =>
  frames
    .map((f) => JSON.parse(f) as { op: string; id?: string })
    .filter((f) => f.op === 'msg')
    .map((f) => f.id as string);

describe('hub: catching up while a commit is on its way', () => {
  it('a resume that reads a committed batch before its fan-out sends each message once', async () => {
    const inner = createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 0 } });
    const store = slowAcking(inner, 50);
    const hub = createHub({
      store,
      clock: createHybridClock('nodelocal0'),
      metrics: createMetrics(),
      log: createLogger('silent'),
      maxMessageBytes: 1024 * 1024,
    });
    const frames: string[] = [];
    const subscriber: Subscriber = {
      id: 'resumer',
      send: (f) => (frames.push(f), true),
      overflow() {},
    };
    const claims = { pub: ['>'], sub: ['>'] };
    const [before] = await hub.publish('t', [{ data: 0 }], { via: 'http', claims });
    const committed = store.nextCommit();
    const publishing = hub.publish(
      't',
      Array.from({ length: 5 }, (_, n) => ({ data: n + 1 })),
      { via: 'http', claims },
    );
    await committed; // in the store, not yet fanned out
    await hub.subscribe(subscriber, 't', before?.cursor);
    const acks = await publishing;
    await hub.writer.drain();
    assert.deepEqual(
      ids(frames),
      acks.map((a) => a.id),
      'each message of the batch once, in order',
    );
    await inner.close();
  });
});
