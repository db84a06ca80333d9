import assert from 'node:assert/strict';
import { copyFile, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { type CassandraServer, findJava, startCassandra } from '../cassandra/cassandra-server.ts';
import { ensureDashboardBuilt, launchChromium, openPage, SHOTS } from '../helpers/dashboard.ts';
import { type EdgeRuntime, freePort, LINK_SECRET, startEdge } from '../helpers/edge.ts';
import { asArgs, FAST_MESH, waitFor } from '../helpers/mesh.ts';
import { type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

/**
 * The cluster view, whole system, in Chromium: three relay processes in one mesh, the edge
 * Worker (workerd through miniflare) linked to relay A, and a real single-node Apache Cassandra
 * under relay A. Any relay's page, opened with the one admin token, shows all three relays, the
 * edge's Durable Object and the Cassandra node. Relay C killed (SIGKILL) shows as down on A's
 * and B's pages and in their status, also after a reload (peer memory), until it is forgotten.
 * The Cassandra node stopped shows as down. Screenshots at 1400 and 390 px go to test-results/
 * (the 1400 px one also to relay-node/dashboard/screenshot.png when UPDATE_SCREENSHOT=1).
 */
const skip = !findJava() && !process.env.CI ? 'java is not installed (CI never skips this suite)' : false;
const ADMIN = 'cluster-view-admin-token-0123456789';
const WAIT = { timeout: 30_000 };
const TOKEN_KEY = 'anode.admin_token';
const auth = { authorization: `Bearer ${ADMIN}` };

interface Peer {
  peer_id: string;
  state: string;
  last_seen: string | null;
  down_since: string | null;
  card: { node?: { id?: string } } | null;
}
interface Status {
  node: { id: string; peer_id: string; multiaddrs: string[] };
  peers: Peer[];
  peers_down?: Peer[];
  store: { kind: string; state?: string; nodes?: { address: string; up: boolean }[] };
  edge_objects?: { topic: string; clients: number | null; link: string | null }[];
}
const statusOf = async (url: string): Promise<Status> => {
  const response = await fetch(`${url}/v1/status`, { headers: auth });
  assert.equal(response.status, 200);
  return (await response.json()) as Status;
};

describe('cluster view: three relays, the edge and Cassandra on one page', { skip }, () => {
  let cassandra: CassandraServer;
  let edge: EdgeRuntime;
  let a: RelayProcess;
  let b: RelayProcess;
  let c: RelayProcess;
  let ids: { a: Status['node']; b: Status['node']; c: Status['node'] };
  let browser: BrowserContext;
  let edgeClient: RawSocket;
  const dirs: string[] = [];

  const relayArgs = async (extra: string[]) => {
    const dir = await tempDir('anode-cluster-view-');
    dirs.push(dir);
    return [
      '--port',
      '0',
      '--data-dir',
      dir,
      '--admin-token',
      ADMIN,
      ...asArgs({ ...FAST_MESH, listen: '/ip4/127.0.0.1/tcp/0', 'mesh-member-interval-ms': '250' }),
      ...extra,
    ];
  };

  /** A page on `url` that already holds the admin token (as after signing in once in this tab). */
  const signedIn = async (url: string) => {
    const opened = await browser.newPage();
    await opened.addInitScript(
      ([key, token]) => sessionStorage.setItem(key as string, token as string),
      [TOKEN_KEY, ADMIN],
    );
    await opened.goto(url);
    return opened;
  };
  const relayRow = (page: Page, node: Status['node'], state: 'up' | 'down') =>
    page.locator(`#relays tr[data-peer="${node.peer_id}"][data-state="${state}"]`);

  before(async () => {
    ensureDashboardBuilt();
    await mkdir(SHOTS, { recursive: true });
    cassandra = await startCassandra({ fast: true, heap: '512m', log: (line) => console.error(`[cassandra] ${line}`) });
    const edgeUrl = `http://127.0.0.1:${await freePort()}`;
    a = await spawnRelay(
      await relayArgs([
        '--store',
        'cassandra',
        '--cassandra-contact-points',
        `${cassandra.host}:${cassandra.port}`,
        '--cassandra-local-dc',
        'datacenter1',
        '--cassandra-keyspace',
        `cv_${Date.now().toString(36)}`,
        '--cassandra-timeout-ms',
        '3000',
      ]),
      { ANODE_EDGE_LINK_SECRET: LINK_SECRET, ANODE_EDGE_URL: edgeUrl },
    );
    const first = await statusOf(a.url);
    const bootstrap = ['--bootstrap', first.node.multiaddrs[0] as string];
    [b, c] = await Promise.all([spawnRelay(await relayArgs(bootstrap)), spawnRelay(await relayArgs(bootstrap))]);
    edge = await startEdge({
      RELAY_URLS: a.url,
      LINK_SECRET,
      LINK_WAIT_MS: '2000',
      LINK_RETRY_MAX_MS: '400',
      EDGE_URL: edgeUrl,
    });
    // A client at the edge: its topic's Durable Object asks relay A for a link.
    edgeClient = await openSocket(`${edge.wsUrl}/v1/topics/demo.edge/ws`);
    await edgeClient.next((f) => f.op === 'subscribed');
    ids = { a: first.node, b: (await statusOf(b.url)).node, c: (await statusOf(c.url)).node };
    // Every relay has every other's status card (over /anode/status/1.0.0).
    await waitFor(
      'every relay to hold the cards of the two others',
      async () => {
        const all = await Promise.all([a, b, c].map((r) => statusOf(r.url)));
        return all.every((s) => s.peers.filter((p) => p.state === 'up' && p.card?.node?.id).length === 2);
      },
      60_000,
      250,
    );
    browser = await launchChromium(await tempDir('anode-chromium-'), { width: 1400, height: 1000 });
  });

  after(async () => {
    edgeClient?.close();
    await browser?.close();
    for (const relay of [a, b, c]) if (relay && relay.child.exitCode === null) relay.child.kill('SIGKILL');
    await Promise.all([a, b, c].map((relay) => relay?.exited));
    await edge?.stop();
    await cassandra?.stop();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('asks once for the admin token, then shows every relay, the edge object and the Cassandra node', async () => {
    const { page } = await openPage(browser, b.url);
    await page.getByLabel('Admin token').fill(ADMIN);
    await page.getByRole('button', { name: 'Open dashboard' }).click();
    for (const node of [ids.a, ids.b, ids.c]) await relayRow(page, node, 'up').waitFor(WAIT);
    // Relay A's row (seen from B, through A's card): Cassandra storage and its edge link.
    const rowA = relayRow(page, ids.a, 'up');
    await page.waitForFunction(
      (selector) => /cassandra/.test(document.querySelector(selector)?.textContent ?? ''),
      `#relays tr[data-peer="${ids.a.peer_id}"]`,
      WAIT,
    );
    // Its edge link: the object dials relay A once its client subscribed (a fresh `sub` is answered
    // first), so the card B fetched first may predate it; the next card has it.
    await page.waitForFunction(
      (selector) => /demo\.edge/.test(document.querySelector(selector)?.textContent ?? ''),
      `#relays tr[data-peer="${ids.a.peer_id}"]`,
      WAIT,
    );
    assert.match((await rowA.textContent()) ?? '', /demo\.edge/);
    // The edge's Durable Object for demo.edge, with its client and its link open, via relay A.
    const object = page.locator(`tr[data-edge-object="demo.edge"][data-via="${ids.a.id}"]`);
    await object.waitFor(WAIT);
    await page.waitForFunction(
      () => /open/.test(document.querySelector('tr[data-edge-object="demo.edge"]')?.textContent ?? ''),
      undefined,
      WAIT,
    );
    assert.equal((await object.locator('[data-field="clients"]').textContent())?.trim(), '1', 'one client at the edge');
    const node = page.locator(`tr[data-cassandra="${cassandra.host}:${cassandra.port}"][data-state="up"]`);
    await node.waitFor(WAIT);
    await page.close();
  });

  it('counts messages accepted at the edge as published on the linked relay', async () => {
    const published = async () => {
      const text = await (await fetch(`${a.url}/metrics`, { headers: auth })).text();
      return Number(/anode_messages_published_total\{via="edge"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    const before = await published();
    const response = await fetch(`${edge.url}/v1/topics/demo.edge/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ data: 'from the edge' }]),
    });
    assert.equal(response.status, 202);
    await waitFor('the edge message counted as published', async () => (await published()) === before + 1, 20_000);
  });

  it('fills the charts from server-side history on load', async () => {
    await fetch(`${a.url}/v1/topics/demo.load/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ data: 1 }, { data: 2 }]),
    });
    // Samples are taken every 2 s: wait for a few, then open a fresh page.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const openedAt = Date.now() / 1000;
    const page = await signedIn(a.url);
    // The first time the chart holds anything, it already reaches back before the page opened.
    const first = await page.waitForFunction(
      () => {
        const chart = document.querySelector('#throughput-chart') as unknown as { points?: number; firstTime?: number };
        return (chart?.points ?? 0) > 0 ? { points: chart.points, firstTime: chart.firstTime } : false;
      },
      undefined,
      { ...WAIT, polling: 50 },
    );
    const { points, firstTime } = (await first.jsonValue()) as { points: number; firstTime: number };
    assert.ok(points >= 2, `the chart starts with the history (${points} points)`);
    assert.ok(firstTime < openedAt - 3, 'its first point is from before the page was opened');
    await page.close();
    const history = await fetch(`${a.url}/v1/status/history`, { headers: auth });
    const { samples } = (await history.json()) as { samples: { at: number; published_per_s: number }[] };
    assert.ok(samples.length >= 2 && samples.length <= 150, `${samples.length} samples, bounded`);
    assert.ok(
      samples.some((s) => s.published_per_s > 0),
      'the two publishes are in the history',
    );
    assert.equal((await fetch(`${a.url}/v1/status/history`)).status, 401);
  });

  it('takes screenshots at 1400 and 390 px', async () => {
    const page = await signedIn(a.url);
    for (const node of [ids.a, ids.b, ids.c]) await relayRow(page, node, 'up').waitFor(WAIT);
    await page.locator('tr[data-edge-object="demo.edge"]').waitFor(WAIT);
    await page.setViewportSize({ width: 1400, height: 1000 });
    await page.screenshot({ path: join(SHOTS, 'cluster-1400.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    // No squeezed columns on a phone: the page is no wider than the screen.
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `page is ${width} px wide at 390 px`);
    await page.screenshot({ path: join(SHOTS, 'cluster-390.png'), fullPage: true });
    if (process.env.UPDATE_SCREENSHOT === '1') {
      await copyFile(
        join(SHOTS, 'cluster-1400.png'),
        fileURLToPath(new URL('../../relay-node/dashboard/screenshot.png', import.meta.url)),
      );
    }
    assert.ok((await stat(join(SHOTS, 'cluster-390.png'))).size > 10_000);
    await page.close();
  });

  it('a killed relay shows as down on the other relays, also after a reload, until forgotten', async () => {
    const pageA = await signedIn(a.url);
    const pageB = await signedIn(b.url);
    await relayRow(pageA, ids.c, 'up').waitFor(WAIT);
    await relayRow(pageB, ids.c, 'up').waitFor(WAIT);
    assert.match((await relayRow(pageA, ids.c, 'up').textContent()) ?? '', /up since \d+[smh] ago/);
    c.child.kill('SIGKILL');
    await c.exited;
    for (const page of [pageA, pageB]) {
      await relayRow(page, ids.c, 'down').waitFor(WAIT);
      assert.match((await page.locator('[data-testid="banner"]').textContent()) ?? '', /is down/);
    }
    // The status API says so too, with when it was last seen, and keeps the last card.
    for (const relay of [a, b]) {
      const status = await statusOf(relay.url);
      assert.ok(!status.peers.some((p) => p.peer_id === ids.c.peer_id), '`peers` lists connected peers only');
      const peer = status.peers_down?.find((p) => p.peer_id === ids.c.peer_id);
      assert.equal(peer?.state, 'down');
      assert.ok(peer?.last_seen && peer.down_since, 'last seen and down since are set');
      assert.equal(peer?.card?.node?.id, ids.c.id, 'the last card is kept');
    }
    // A freshly loaded page knows it too (the server remembers, not the tab).
    await pageB.reload();
    await relayRow(pageB, ids.c, 'down').waitFor(WAIT);
    assert.match((await relayRow(pageB, ids.c, 'down').textContent()) ?? '', /last seen/);
    await pageB.screenshot({ path: join(SHOTS, 'cluster-relay-down.png'), fullPage: true });
    // Forgetting it (the admin action) removes it from B's view; A still remembers it.
    const forgotten = await fetch(`${b.url}/v1/mesh/peers/${ids.c.peer_id}`, { method: 'DELETE', headers: auth });
    assert.equal(forgotten.status, 200);
    const refused = await fetch(`${b.url}/v1/mesh/peers/${ids.a.peer_id}`, { method: 'DELETE', headers: auth });
    assert.equal(refused.status, 409, 'a connected peer is not forgotten');
    const unauthorized = await fetch(`${a.url}/v1/mesh/peers/${ids.c.peer_id}`, { method: 'DELETE' });
    assert.equal(unauthorized.status, 401);
    await pageB.reload();
    await relayRow(pageB, ids.a, 'up').waitFor(WAIT);
    assert.equal(await pageB.locator(`#relays tr[data-peer="${ids.c.peer_id}"]`).count(), 0);
    await relayRow(pageA, ids.c, 'down').waitFor(WAIT);
    await pageA.close();
    await pageB.close();
  });

  it('a stopped Cassandra node shows as down', async () => {
    const page = await signedIn(a.url);
    const address = `${cassandra.host}:${cassandra.port}`;
    await page.locator(`tr[data-cassandra="${address}"][data-state="up"]`).waitFor(WAIT);
    await cassandra.stop();
    await page.locator(`tr[data-cassandra="${address}"][data-state="down"]`).waitFor({ timeout: 60_000 });
    assert.match((await page.locator('[data-testid="banner"]').textContent()) ?? '', /Cassandra node .* is down/);
    // B's page shows it too, from relay A's card.
    const pageB = await signedIn(b.url);
    await pageB.locator(`tr[data-cassandra="${address}"][data-state="down"]`).waitFor({ timeout: 60_000 });
    await page.screenshot({ path: join(SHOTS, 'cluster-cassandra-down.png'), fullPage: true });
    await page.close();
    await pageB.close();
  });
});
