import assert from 'node:assert/strict';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { ensureDashboardBuilt, launchChromium, openPage, SHOTS } from '../helpers/dashboard.ts';
import { startFeeds } from '../helpers/feeds.ts';
import { asArgs, FAST_MESH, freePort, meshStatus } from '../helpers/mesh.ts';
import { spawnRelay, startRelay, tempDir, type TestRelay } from '../helpers/relay.ts';

/**
 * The dashboard in Debian's Chromium (playwright-core): loads cleanly, follows live counts,
 * shows a failing source (a real HTTP source polling a closed port), a stopped peer (two real
 * relays, one killed), the topic tail, and the admin-token guard. Screenshots go to
 * test-results/. The whole cluster view (three relays, the edge, Cassandra) is
 * dashboard-cluster.test.ts.
 */
const WAIT = { timeout: 15_000 };

const publish = (relay: TestRelay, topic: string, data: unknown) =>
  fetch(`${relay.url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ data, source: 'dashboard-test' }),
  }).then((res) => assert.equal(res.status, 202));

describe('dashboard', () => {
  let relay: TestRelay;
  let browser: BrowserContext;
  let profile: string;

  before(async () => {
    ensureDashboardBuilt();
    await mkdir(SHOTS, { recursive: true });
    const closed = await freePort();
    const sources = [
      {
        name: 'broken-feed',
        kind: 'http',
        topic: 'demo.broken',
        url: `http://127.0.0.1:${closed}/feed`,
        interval_ms: 500,
        backoff_min_ms: 200,
        backoff_max_ms: 1000,
        timeout_ms: 1000,
      },
    ];
    relay = await startRelay({ sources: JSON.stringify(sources) });
    profile = await tempDir('anode-chromium-');
    browser = await launchChromium(profile);
  });

  after(async () => {
    await browser?.close();
    await relay?.stop();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  const open = (url: string) => openPage(browser, url);

  const textOf = (page: Page, selector: string) => page.locator(selector).first().textContent(WAIT);

  it('loads with no console errors and shows the node id as text', async () => {
    const { page, errors } = await open(relay.url);
    const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as { node: { id: string } };
    await page.getByText(status.node.id, { exact: true }).first().waitFor(WAIT);
    assert.equal(await textOf(page, '[data-testid="node-id"]'), status.node.id);
    await page.locator('time-chart .u-legend').first().waitFor(WAIT);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('counts change when messages flow', async () => {
    const { page, errors } = await open(relay.url);
    await page.locator('[data-testid="node-id"]').waitFor(WAIT);
    for (let i = 0; i < 3; i++) await publish(relay, 'demo.prices', { price: 100 + i });
    const cell = '[data-topic="demo.prices"] [data-field="published"]';
    await page.waitForFunction((s) => document.querySelector(s)?.textContent?.trim() === '3', cell, WAIT);
    for (let i = 0; i < 2; i++) await publish(relay, 'demo.prices', { price: 200 + i });
    await page.waitForFunction((s) => document.querySelector(s)?.textContent?.trim() === '5', cell, WAIT);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('a failing source shows its error state, in text', async () => {
    const { page, errors } = await open(relay.url);
    const row = page.locator('tr[data-source="broken-feed"][data-health="error"]');
    await row.waitFor(WAIT);
    await row.locator('[data-testid="source-error"]').waitFor(WAIT);
    assert.match((await row.textContent()) ?? '', /failing|error/i);
    assert.match((await textOf(page, '[data-testid="banner"]')) ?? '', /Source broken-feed is failing/);
    await page.screenshot({ path: `${SHOTS}dashboard-failing-source.png`, fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('the topic tail shows a published message', async () => {
    const { page, errors } = await open(relay.url);
    await page.getByLabel('Topic or pattern').fill('demo.tail');
    await page.getByRole('button', { name: 'Watch' }).click();
    await page.waitForFunction(
      () => document.querySelector('[data-testid="tail-state"]')?.textContent?.includes(': live'),
      undefined,
      WAIT,
    );
    await publish(relay, 'demo.tail', { hello: 'tail-marker-42' });
    await page.locator('[data-testid="tail"] li', { hasText: 'tail-marker-42' }).waitFor(WAIT);
    await page.getByLabel('Filter').fill('no-such-text');
    await page
      .locator('[data-testid="tail"] li')
      .first()
      .waitFor({ state: 'detached', ...WAIT });
    await page.getByLabel('Filter').fill('marker');
    await page.locator('[data-testid="tail"] li', { hasText: 'tail-marker-42' }).waitFor(WAIT);
    await page.screenshot({ path: `${SHOTS}dashboard.png`, fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: `${SHOTS}dashboard-phone.png`, fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('a stopped peer shows as down (two real meshed relays, one killed)', async () => {
    // Both pull the same sources: each is pulled by one of them, `standby` on the other.
    const feeds = await startFeeds();
    const sources = Array.from({ length: 16 }, (_, i) => ({
      name: `shared-${i}`,
      kind: 'http',
      topic: `demo.shared${i}`,
      url: feeds.httpUrl(`shared-${i}`),
      interval_ms: 500,
    }));
    const mesh = [
      ...asArgs({ ...FAST_MESH, listen: '/ip4/127.0.0.1/tcp/0', 'mesh-member-interval-ms': '250' }),
      '--sources',
      JSON.stringify(sources),
    ];
    const first = await spawnRelay(['--port', '0', '--data-dir', await tempDir(), ...mesh]);
    const address = (await meshStatus(first.url)).node.multiaddrs[0] ?? '';
    const second = await spawnRelay(['--port', '0', '--data-dir', await tempDir(), ...mesh, '--bootstrap', address]);
    try {
      const { peer_id: peerId, id: secondId } = (await meshStatus(second.url)).node;
      const { page, errors } = await open(first.url);
      await page.locator(`tr[data-peer="${peerId}"][data-state="up"]`).waitFor(WAIT);
      const owner = page.locator('[data-testid="source-owner"]');
      await owner.first().waitFor(WAIT);
      assert.equal(await owner.first().textContent(), `on ${secondId.slice(0, 8)}`);
      second.child.kill('SIGKILL');
      await second.exited;
      const down = page.locator(`tr[data-peer="${peerId}"][data-state="down"]`);
      await down.waitFor(WAIT);
      // The survivor pulls every source now: nothing is left on standby.
      await owner.first().waitFor({ ...WAIT, state: 'detached' });
      assert.match((await down.textContent()) ?? '', /down/);
      assert.match((await textOf(page, '[data-testid="banner"]')) ?? '', /is down/);
      await page.screenshot({ path: `${SHOTS}dashboard-real-peer-down.png`, fullPage: true });
      assert.deepEqual(errors, []);
      await page.close();
    } finally {
      second.child.kill('SIGKILL');
      first.child.kill('SIGTERM');
      await first.exited;
      await feeds.stop();
    }
  });

  it("a relay started on a copy of this one's node id shows in the banner", async () => {
    const original = await startRelay({ ...FAST_MESH, listen: '/ip4/127.0.0.1/tcp/0' });
    const copyDir = await tempDir();
    await copyFile(join(original.dataDir, 'node-id'), join(copyDir, 'node-id'));
    const bootstrap = (await meshStatus(original.url)).node.multiaddrs[0] as string;
    const copy = await startRelay({ ...FAST_MESH, bootstrap }, { dataDir: copyDir });
    try {
      const { page, errors } = await open(original.url);
      const banner = page.locator('[data-testid="banner"]', { hasText: "uses this relay's node id" });
      await banner.waitFor(WAIT);
      assert.match((await banner.textContent()) ?? '', /a copied data folder\?/);
      await page.screenshot({ path: `${SHOTS}dashboard-twin.png`, fullPage: true });
      assert.deepEqual(errors, []);
      await page.close();
    } finally {
      await copy.stop();
      await original.stop();
    }
  });

  it('asks for the admin token when auth is on, and opens with it', async () => {
    const secured = await startRelay({ 'jwt-secret': 'x'.repeat(32), 'admin-token': 'dashboard-admin-token-1' });
    try {
      const refused = await fetch(`${secured.url}/v1/status/stream`);
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      const page = await browser.newPage();
      await page.goto(secured.url);
      await page.getByLabel('Admin token').fill('dashboard-admin-token-1');
      await page.getByRole('button', { name: 'Open dashboard' }).click();
      await page.locator('[data-testid="node-id"]').waitFor(WAIT);
      await page.close();
    } finally {
      await secured.stop();
    }
  });
});
