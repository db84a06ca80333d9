import { createCounts } from '../server/connection-caps.ts';

/**
 * Open streams of one kind (status streams, topic tails) counted per client address and in
 * total, so neither one host nor many can make the relay serve an unbounded number of them.
 * `take` throws `limit_reached` (429) or returns the release to call when the stream ends.
 */
export interface StreamSlots {
  take(address: string): () => void;
}

export function createStreamSlots(what: string, limits: { perClient: number; total: number }): StreamSlots {
  const byAddress = createCounts(limits.perClient, (n) => `at most ${n} ${what} per client address; close one first`);
  const all = createCounts(limits.total, (n) => `at most ${n} ${what} at once; try again later`);
  return {
    take(address) {
      byAddress.take(address);
      try {
        all.take('');
      } catch (error) {
        byAddress.give(address);
        throw error;
      }
      let released = false;
      return () => {
        if (released) return;
        released = true;
        byAddress.give(address);
        all.give('');
      };
    },
  };
}
