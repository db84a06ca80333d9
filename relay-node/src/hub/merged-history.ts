import { compareCursors, type Envelope, type MessageStore } from '@anode/shared';

/**
 * Every stored message of `topics` after `after`, in cursor order across topics (a k-way merge
 * of per-topic pages), for resuming pattern subscriptions.
 */
export async function* mergedHistory(
  store: MessageStore,
  topics: readonly string[],
  after: string,
  pageSize = 500,
): AsyncGenerator<Envelope> {
  const streams = topics.map((topic) => ({ topic, after, page: [] as Envelope[], done: false }));
  const refill = async (s: (typeof streams)[number]) => {
    if (s.page.length > 0 || s.done) return;
    s.page = await store.history(s.topic, { after: s.after, limit: pageSize });
    if (s.page.length < pageSize) s.done = true;
    const last = s.page.at(-1);
    if (last) s.after = last.cursor;
  };
  for (;;) {
    await Promise.all(streams.map(refill));
    let next: (typeof streams)[number] | undefined;
    for (const s of streams) {
      const head = s.page[0];
      if (head && (!next || compareCursors(head.cursor, next.page[0]?.cursor ?? '') < 0)) next = s;
    }
    if (!next) return;
    yield next.page.shift() as Envelope;
  }
}
