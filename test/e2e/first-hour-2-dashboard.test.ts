import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { ensureDashboardBuilt, launchChromium, openPage } from '../helpers/dashboard.ts';
import { type Feeds, startFeeds } from '../helpers/feeds.ts';
import { FAST_MESH, freePort, meshStatus, waitFor } from '../helpers/mesh.ts';
import { startRelay, tempDir, type TestRelay } from '../helpers/relay.ts';

/**
 * The dashboard page of a two-relay mesh as a new user meets it, in Debian's Chromium: a paused
 * source (an http source, `paused: true`) and a websocket source streaming from a real loopback
 * feed, both in each relay's config. Before, the page's own "this relay" row counted the paused
 * source as owned on both relays (17b812d fixed the status card, not the page), and a websocket
 * source never showed "streaming" (the page looked for a state `running` no source has).
 */
const WAIT = { timeout: 30_000 };

interface Status {
  node: { id: string };
  sources: { name: string; state: string; owner?: string | null }[];
}

const statusOf = async (relay: TestRelay) =>
  (await (await fetch(`${relay.url}/v1/status`, { signal: AbortSignal.timeout(10_000) })).json()) as Status;

describe('first hour: the dashboard page of a two-relay mesh with sources', () => {
  let feeds: Feeds;
  const relays: TestRelay[] = [];
  let browser: BrowserContext;
  let profile: string;
  /** Each relay's status once both agree on each source's owner. */
  let statuses: Status[] = [];

  before(async () => {
    ensureDashboardBuilt();
    feeds = await startFeeds();
    feeds.push('live', { id: 'first', ts: Date.now() });
    const sources = JSON.stringify([
      { name: 'held', kind: 'http', topic: 'fh2.held', url: `http://127.0.0.1:${await freePort()}/none`, paused: true },
      { name: 'live', kind: 'websocket', topic: 'fh2.live', url: feeds.wsUrl('live') },
    ]);
    const a = await startRelay({ ...FAST_MESH, sources, listen: '/ip4/127.0.0.1/tcp/0' });
    relays.push(a);
    const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    relays.push(await startRelay({ ...FAST_MESH, sources, bootstrap }));
    await waitFor(
      'both relays to agree on each source’s owner, and the websocket source to be connected',
      async () => {
        statuses = await Promise.all(relays.map(statusOf));
        const owners = (name: string) => statuses.map((s) => s.sources.find((source) => source.name === name)?.owner);
        return (
          ['held', 'live'].every((name) => {
            const [first, second] = owners(name);
            return typeof first === 'string' && first === second;
          }) && statuses.some((s) => s.sources.some((x) => x.name === 'live' && x.state === 'connected'))
        );
      },
      60_000,
    );
    profile = await tempDir('anode-chromium-');
    browser = await launchChromium(profile);
  });

  after(async () => {
    await browser?.close();
    await Promise.all(relays.map((relay) => relay.stop()));
    await feeds?.stop();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  /** The relay (and its status) whose node is, or is not, the owner of `source`. */
  const relayOf = (source: string, owner: boolean) => {
    const index = statuses.findIndex((s) => (s.sources.find((x) => x.name === source)?.owner === s.node.id) === owner);
    assert.ok(index >= 0, `a relay that ${owner ? 'owns' : 'does not own'} ${source}`);
    return { relay: relays[index] as TestRelay, status: statuses[index] as Status };
  };

  const thisRelayRow = async (page: Page, nodeId: string) => {
    const row = page.locator(`tr[data-relay="${nodeId}"]`);
    await row.waitFor(WAIT);
    return row;
  };

  it('the "this relay" row does not count a paused source another relay owns', async () => {
    const { relay, status } = relayOf('held', false);
    const { page, errors } = await openPage(browser, relay.url);
    try {
      const row = await thisRelayRow(page, status.node.id);
      const owned = status.sources.filter((s) => s.owner === status.node.id).map((s) => s.name);
      // The count is of the two sources; only those this relay owns are named.
      await page.waitForFunction(
        ([selector, count]) => document.querySelector(selector as string)?.textContent?.includes(`${count} of 2`),
        [`tr[data-relay="${status.node.id}"]`, owned.length] as const,
        WAIT,
      );
      const text = (await row.textContent()) ?? '';
      assert.ok(!/\bheld\b/.test(text), `the paused source held is not listed as this relay's: ${text}`);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  it('a connected websocket source shows as streaming', async () => {
    const { relay } = relayOf('live', true);
    const { page, errors } = await openPage(browser, relay.url);
    try {
      const row = page.locator('tr[data-source="live"]');
      await row.waitFor(WAIT);
      await page.waitForFunction(
        () => document.querySelector('tr[data-source="live"]')?.textContent?.includes('streaming'),
        undefined,
        WAIT,
      );
      assert.match((await row.textContent()) ?? '', /connected/);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});
