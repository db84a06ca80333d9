import { compareCursors, CursorExpiredError, type Envelope, newerForLatest } from '@anode/shared';
import type { HubCore } from './hub-core.ts';

/**
 * HTTP history and latest at the edge. A page at or above the ring's floor comes from the ring,
 * but only while the relay link is up and caught up (otherwise the ring may lack what the mesh
 * accepted meanwhile, and a one-shot read has no later to catch up in); anything else comes from
 * the relay over the link, topped up from the ring and the unforwarded publishes when the relay's
 * answer reaches the end. Latest is the relay's, merged with the publishes it has not stored yet.
 * With no relay configured, this object holds the whole topic and the ring is all there is.
 */
export function createHistory(core: Pick<HubCore, 'store' | 'link' | 'linked'>) {
  const { store, link } = core;

  const merge = (messages: Envelope[], after: string, limit: number): Envelope[] => {
    const have = new Set(messages.map((m) => m.id));
    const newest = messages.at(-1)?.cursor ?? after;
    const more = [...store.ringPage(newest, limit), ...store.outbox.afterCursor(newest)]
      .map((m) => m.envelope)
      .filter((m) => !have.has(m.id) && (have.add(m.id), true));
    return [...messages, ...more].sort((a, b) => compareCursors(a.cursor, b.cursor)).slice(0, limit);
  };

  const page = (messages: Envelope[], limit: number) => {
    const last = messages.at(-1);
    return { messages, next: messages.length === limit && last ? last.cursor : null };
  };

  return {
    async page(after: string | undefined, limit: number) {
      const from = after ?? '0';
      const ringComplete = !core.linked || link.caughtUp();
      if ((ringComplete && compareCursors(from, store.floor()) >= 0) || (!core.linked && after === undefined)) {
        return page(
          store.ringPage(from, limit).map((m) => m.envelope),
          limit,
        );
      }
      if (!core.linked) {
        throw new CursorExpiredError(`cursor ${from} is older than this edge keeps (from ${store.floor()})`);
      }
      const reply = await link.request({ op: 'history', limit, ...(after ? { after } : {}) });
      return reply.next === null ? page(merge(reply.messages, from, limit), limit) : reply;
    },

    async latest(): Promise<{ sources: Record<string, Envelope> }> {
      const sources: Record<string, Envelope> = {};
      const newer = (m: Envelope) => {
        if (newerForLatest(m, sources[m.source])) sources[m.source] = m;
      };
      if (core.linked) {
        const reply = await link.request({ op: 'latest' });
        Object.assign(sources, reply.sources);
        store.outbox.all().forEach((m) => newer(m.envelope));
      } else {
        store.ringPage('0', Number.MAX_SAFE_INTEGER).forEach((m) => newer(m.envelope));
      }
      return { sources };
    },
  };
}
