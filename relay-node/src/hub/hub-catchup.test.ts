import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MessageStore } from '@anode/shared';
import { memoryStore, recorder, testHub } from './test-hub.ts';

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

describe('hub: catching up while a commit is on its way', () => {
  it('a resume that reads a committed batch before its fan-out sends each message once', async () => {
    const inner = memoryStore();
    const store = slowAcking(inner, 50);
    const hub = testHub(store);
    const subscriber = recorder('resumer');
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
      subscriber.ids(),
      acks.map((a) => a.id),
      'each message of the batch once, in order',
    );
    await inner.close();
  });
});
