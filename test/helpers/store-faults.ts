import { type MessageStore, UnavailableError } from '@anode/shared';

/**
 * A fault-injection test double around a relay's real store: while `down` is set, listing topics
 * (what a pattern's resume reads first) fails with `unavailable`, as a store that is down does; an
 * exact topic still resumes. `refusals` counts the listings refused. Pass `wrap` as startRelay's
 * `wrapStore`.
 */
export function topicListingFaults() {
  const faults = {
    down: false,
    refusals: 0,
    wrap: (store: MessageStore): MessageStore => ({
      ...store,
      topics: async (...args: Parameters<MessageStore['topics']>) => {
        if (!faults.down) return store.topics(...args);
        faults.refusals += 1;
        throw new UnavailableError('cannot list topics (test double)');
      },
    }),
  };
  return faults;
}
