import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Envelope, LATEST_PAGE_SOURCES } from '@anode/shared';
import { type LinkedEdge, startLinkedEdge } from '../helpers/edge.ts';

/**
 * `latest` at an edge linked to a relay (a real relay process, the Worker on workerd), in pages
 * over the link: a topic with more sources than one relay page (LATEST_PAGE_SOURCES) is read
 * whole through the edge, page by page. When the link's `latest` had no paging fields, the edge got
 * the relay's first page only and lost the other 500 sources without a `next`.
 */

type LatestPage = { sources: Record<string, Envelope>; next?: string };

const SOURCES = 1500;
const names = Array.from({ length: SOURCES }, (_, i) => `src-${String(i).padStart(4, '0')}`);

/** Every page from `url` (at most `maxPages`), following `next`. */
async function walk(url: string, query: string, maxPages = 20): Promise<{ pages: string[][]; nexts: string[] }> {
  const pages: string[][] = [];
  const nexts: string[] = [];
  let after = '';
  for (let i = 0; i < maxPages; i++) {
    const res = await fetch(`${url}?${query}${after}`);
    assert.equal(res.status, 200, await res.clone().text());
    const page = (await res.json()) as LatestPage;
    for (const [source, envelope] of Object.entries(page.sources)) assert.equal(envelope.data, source);
    pages.push(Object.keys(page.sources).sort());
    if (page.next === undefined) break;
    nexts.push(page.next);
    after = `&after_source=${encodeURIComponent(page.next)}`;
  }
  return { pages, nexts };
}

describe('latest through a linked edge, in pages over the link', () => {
  let linked: LinkedEdge;
  before(async () => {
    linked = await startLinkedEdge();
    // Stored on the relay (202 once durable), so the edge reads them over the link.
    for (let i = 0; i < SOURCES; i += 750) {
      const res = await fetch(`${linked.relay.url}/v1/topics/edge.latest/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(names.slice(i, i + 750).map((source) => ({ source, data: source }))),
      });
      assert.equal(res.status, 202, await res.text());
    }
  });
  after(async () => linked?.stop());

  it('reads every source once, in the relay pages, past the first', async () => {
    const { pages, nexts } = await walk(`${linked.edge.url}/v1/topics/edge.latest/latest`, '');
    assert.deepEqual(
      pages.map((p) => p.length),
      [LATEST_PAGE_SOURCES, SOURCES - LATEST_PAGE_SOURCES],
    );
    assert.deepEqual(nexts, [names[LATEST_PAGE_SOURCES - 1]]);
    assert.deepEqual(pages.flat(), names, 'every source once, in source order');
  });

  it('passes limit and after_source over the link', async () => {
    const { pages, nexts } = await walk(`${linked.edge.url}/v1/topics/edge.latest/latest`, 'limit=600');
    assert.deepEqual(
      pages.map((p) => p.length),
      [600, 600, 300],
    );
    assert.deepEqual(nexts, [names[599], names[1199]]);
    assert.deepEqual(pages.flat(), names);
    // The same pages as the relay's own.
    const relay = await walk(`${linked.relay.url}/v1/topics/edge.latest/latest`, 'limit=600');
    assert.deepEqual(relay, { pages, nexts });
  });
});
