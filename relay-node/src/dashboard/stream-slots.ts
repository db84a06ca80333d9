import { LimitReachedError } from '@anode/shared';

/**
 * Open streams of one kind (status streams, topic tails) counted per client address and in
 * total, so neither one host nor many can make the relay serve an unbounded number of them.
 * `take` throws `limit_reached` (429) or returns the release to call when the stream ends.
 */
export interface StreamSlots {
  take(address: string): () => void;
  /** Streams open now. */
  readonly open: number;
}

export function createStreamSlots(what: string, limits: { perClient: number; total: number }): StreamSlots {
  const byAddress = new Map<string, number>();
  let open = 0;
  return {
    take(address) {
      const mine = byAddress.get(address) ?? 0;
      if (mine >= limits.perClient) {
        throw new LimitReachedError(`at most ${limits.perClient} ${what} per client address; close one first`);
      }
      if (open >= limits.total) throw new LimitReachedError(`at most ${limits.total} ${what} at once; try again later`);
      byAddress.set(address, mine + 1);
      open += 1;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        open -= 1;
        const left = (byAddress.get(address) ?? 1) - 1;
        if (left <= 0) byAddress.delete(address);
        else byAddress.set(address, left);
      };
    },
    get open() {
      return open;
    },
  };
}
