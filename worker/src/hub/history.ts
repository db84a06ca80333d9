import {
  compareCursors,
  compareSources,
  CursorExpiredError,
  dataBytes,
  type Envelope,
  followResumeCursor,
  HISTORY_PAGE_BYTES,
  newerForLatest,
  takePage,
} from '@anode/shared';
import type { StoredMessage } from './hub-store.ts';
import type { HubCore } from './hub-core.ts';
import { mergeByCursor, rowBytes } from './pages.ts';

/**
 * HTTP history and latest at the edge. A page at or above the ring's floor comes from the ring,
 * but only while the relay link is up and caught up (otherwise the ring may lack what the mesh
 * accepted meanwhile, and a one-shot read has no later to catch up in); anything else comes from
 * the relay over the link, each page merged by cursor with what the ring and the unforwarded
 * publishes hold in its range (up to the relay's `next`, or on when it has no more). Latest is the
 * relay's, merged with the publishes it has not stored yet.
 * With no relay configured, this object holds the whole topic and the ring is all there is.
 *
 * A page holds at most `limit` messages and HISTORY_PAGE_BYTES (PROTOCOL.md; the whole envelope
 * is counted, one message always), read row by row; `next` is set when more follow.
 */
/** Further relay pages one short page may take (each asked only while the page is short of `limit`). */
const MORE_PAGES = 3;

export function createHistory(core: Pick<HubCore, 'store' | 'clock' | 'link' | 'linked'>) {
  const { store, clock, link } = core;

  const page = (rows: Iterable<StoredMessage>, limit: number) => {
    const { page: taken, cut } = takePage(rows, { limit, maxBytes: HISTORY_PAGE_BYTES }, rowBytes);
    const messages = taken.map((m) => m.envelope);
    return { messages, next: cut ? (messages.at(-1)?.cursor ?? null) : null };
  };

  /**
   * A relay's page merged by cursor with what the ring and the outbox hold after `after`, up to
   * `through` (the relay's `next`: what follows is on its next page) or to the end. A publish the
   * edge acked and the relay has not stored yet can sort below the relay's newest (a message minted
   * elsewhere after it): appended only after the relay's page, it was left out of every page.
   */
  function* merged(messages: Envelope[], after: string, through: string | null): Generator<StoredMessage> {
    const relayIds = new Set(messages.map((m) => m.id));
    function* held() {
      for (const row of store.since(after)) {
        if (through !== null && compareCursors(row.envelope.cursor, through) > 0) return;
        if (!relayIds.has(row.envelope.id)) yield row;
      }
    }
    const relayRows = messages.map((envelope) => ({ envelope, body: JSON.stringify(envelope) }));
    yield* mergeByCursor(relayRows, held());
  }

  return {
    async page(after: string | undefined, limit: number) {
      // A poller pages on from `after` while `next` is null: a cursor from a node whose clock is
      // ahead moves this object's clock past it, as a resume's does (subscriptions.ts).
      if (after !== undefined) followResumeCursor(clock, after);
      const from = after ?? '0';
      const ringComplete = !core.linked || link.caughtUp();
      if ((ringComplete && compareCursors(from, store.floor()) >= 0) || (!core.linked && after === undefined)) {
        return page(store.ringFrom(from), limit);
      }
      if (!core.linked) {
        throw new CursorExpiredError(`cursor ${from} is older than this edge keeps (from ${store.floor()})`);
      }
      const reply = await link.request({ op: 'history', limit, ...(after ? { after } : {}) });
      let { messages, next } = reply;
      // A relay page short of `limit` with `next` set: the relay found more just after reading it,
      // typically this object's own publishes, forwarded meanwhile. Merged only up to `next`, the
      // page left out messages this object acked and holds (a CI run: 1 of 4 just posted, with
      // `next`). Valid paging, but a reader expects a page to hold what fits: ask on, a few times.
      // Not past half a page's bytes: a relay page cut for its bytes would be cut here again.
      const short = () =>
        messages.length < limit && messages.reduce((n, m) => n + dataBytes(m), 0) < HISTORY_PAGE_BYTES / 2;
      for (let more = 0; more < MORE_PAGES && next !== null && short(); more++) {
        try {
          const rest = await link.request({ op: 'history', limit: limit - messages.length, after: next });
          messages = [...messages, ...rest.messages];
          next = rest.next;
        } catch {
          break; // the page so far stands; its `next` is asked again, and refused if it must be
        }
      }
      const merge = page(merged(messages, from, next), limit);
      // Not cut here: everything up to the relay's `next` is in, and the relay has more after it.
      return merge.next === null && next !== null ? { ...merge, next } : merge;
    },

    /**
     * One latest page, as a relay answers it (PROTOCOL.md): the sources after `after` in source
     * order, at most `limit` and HISTORY_PAGE_BYTES of data (one source always), `next` (the last
     * source) only while more follow. Linked, the relay's page for the same query, merged with the
     * newest unforwarded publish of each source in its range (up to the relay's `next`: the sources
     * after it are on its next page), then cut again: the outbox may add sources to the range.
     */
    async latest(
      after: string | undefined,
      limit: number,
    ): Promise<{ sources: Record<string, Envelope>; next?: string }> {
      const query = { limit, maxBytes: HISTORY_PAGE_BYTES };
      const measure = (m: Envelope) => dataBytes(m);
      const answer = (page: Envelope[], next: string | undefined) => ({
        // fromEntries defines own properties, so a source named `__proto__` is kept.
        sources: Object.fromEntries(page.map((m) => [m.source, m])),
        ...(next === undefined ? {} : { next }),
      });
      if (!core.linked) {
        const { page: taken, cut } = takePage(store.latestInRing(after), query, (row) => measure(row.envelope));
        const page = taken.map((row) => row.envelope);
        return answer(page, cut ? page.at(-1)?.source : undefined);
      }
      const reply = await link.request({
        op: 'latest',
        limit,
        ...(after === undefined ? {} : { after_source: after }),
      });
      const through = reply.next;
      const inRange = (source: string) =>
        (after === undefined || compareSources(source, after) > 0) &&
        (through === undefined || compareSources(source, through) <= 0);
      const sources = new Map<string, Envelope>();
      const newer = (m: Envelope) => {
        if (inRange(m.source) && newerForLatest(m, sources.get(m.source))) sources.set(m.source, m);
      };
      // Filtered by range too: a relay from before paging ignores `after_source` and sends its first
      // page or every source, without `next`.
      for (const m of Object.values(reply.sources)) newer(m);
      for (const row of store.outbox.latest(after)) {
        if (through !== undefined && compareSources(row.envelope.source, through) > 0) break;
        newer(row.envelope);
      }
      const sorted = [...sources.values()].sort((a, b) => compareSources(a.source, b.source));
      const { page, cut } = takePage(sorted, query, measure);
      // Not cut here: everything up to the relay's `next` is in, and the relay has more after it.
      return answer(page, cut ? page.at(-1)?.source : through);
    },
  };
}
