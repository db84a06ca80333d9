import type { LinkStore } from './link-store.ts';

/**
 * The relay's `max_message_bytes`, as its `hello` last said it (PROTOCOL.md "Limits": every layer
 * behind the entry carries any message the entry accepted). A relay refuses on the link a message
 * above its own limit; the edge had acked it and dropped it from its outbox then, so it was lost.
 * A linked object therefore accepts `data` up to the lower of its own MAX_MESSAGE_BYTES and the
 * relay's. Kept in storage, as the reserved names are: a hibernated object, or one whose link is
 * down, still applies the last limit it heard. A relay that says none (older than the field)
 * leaves the edge's own.
 */
const KEY = 'relay_max_message_bytes';

export function createRelayLimit(meta: LinkStore['meta'], own: number, topic: () => string) {
  let heard: number | null | undefined; // undefined: not loaded yet; null: none heard
  const load = () => {
    if (heard === undefined) {
      const stored = Number(meta.get(KEY));
      heard = Number.isSafeInteger(stored) && stored > 0 ? stored : null;
    }
    return heard;
  };
  return {
    effective: (): number => Math.min(own, load() ?? own),
    /** A relay said hello, with its limit or (an older relay) without. */
    hello(limit: number | undefined): void {
      if (limit === undefined || limit === load()) return;
      meta.set(KEY, String(limit));
      heard = limit;
      if (limit < own) {
        console.warn(
          JSON.stringify({
            msg: 'edge: the relay accepts smaller messages than MAX_MESSAGE_BYTES; this topic applies the relay limit',
            topic: topic(),
            max_message_bytes: own,
            relay_max_message_bytes: limit,
          }),
        );
      }
    },
  };
}
