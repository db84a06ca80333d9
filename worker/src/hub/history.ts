import {
  compareCursors,
  CursorExpiredError,
  type Envelope,
  HISTORY_PAGE_BYTES,
  newerForLatest,
  takePage,
} from '@anode/shared';
import type { StoredMessage } from './hub-store.ts';
import type { HubCore } from './hub-core.ts';
import { rowBytes } from './pages.ts';

/**
 * HTTP history and latest at the edge. A page at or above the ring's floor comes from the ring,
 * but only while the relay link is up and caught up (otherwise the ring may lack what the mesh
 * accepted meanwhile, and a one-shot read has no later to catch up in); anything else comes from
 * the relay over the link, topped up from the ring and the unforwarded publishes when the relay's
 * answer reaches the end. Latest is the relay's, merged with the publishes it has not stored yet.
 * With no relay configured, this object holds the whole topic and the ring is all there is.
 *
 * A page holds at most `limit` messages and HISTORY_PAGE_BYTES (PROTOCOL.md; the whole envelope
 * is counted, one message always), read row by row; `next` is set when more follow.
 */
export function createHistory(core: Pick<HubCore, 'store' | 'link' | 'linked'>) {
  const { store, link } = core;

  const page = (rows: Iterable<StoredMessage>, limit: number) => {
    const { page: taken, cut } = takePage(rows, { limit, maxBytes: HISTORY_PAGE_BYTES }, rowBytes);
    const messages = taken.map((m) => m.envelope);
    return { messages, next: cut ? (messages.at(-1)?.cursor ?? null) : null };
  };

  /** The relay's last page, then what the ring and the outbox hold after it. */
  function* merged(messages: Envelope[], after: string): Generator<StoredMessage> {
    for (const envelope of messages) yield { envelope, body: JSON.stringify(envelope) };
    yield* store.since(messages.at(-1)?.cursor ?? after);
  }

  return {
    async page(after: string | undefined, limit: number) {
      const from = after ?? '0';
      const ringComplete = !core.linked || link.caughtUp();
      if ((ringComplete && compareCursors(from, store.floor()) >= 0) || (!core.linked && after === undefined)) {
        return page(store.ringFrom(from), limit);
      }
      if (!core.linked) {
        throw new CursorExpiredError(`cursor ${from} is older than this edge keeps (from ${store.floor()})`);
      }
      const reply = await link.request({ op: 'history', limit, ...(after ? { after } : {}) });
      return reply.next === null ? page(merged(reply.messages, from), limit) : reply;
    },

    async latest(): Promise<{ sources: Record<string, Envelope> }> {
      const sources = new Map<string, Envelope>();
      const newer = (m: Envelope) => {
        if (newerForLatest(m, sources.get(m.source))) sources.set(m.source, m);
      };
      if (core.linked) {
        const reply = await link.request({ op: 'latest' });
        for (const m of Object.values(reply.sources)) newer(m);
        store.outbox.latest().forEach((m) => newer(m.envelope));
      } else {
        store.latestInRing().forEach((m) => newer(m.envelope));
      }
      // fromEntries defines own properties, so a source named `__proto__` is kept.
      return { sources: Object.fromEntries(sources) };
    },
  };
}
