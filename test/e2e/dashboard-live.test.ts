import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { ensureDashboardBuilt, launchChromium, openPage } from '../helpers/dashboard.ts';
import { spawnRelay, startRelay, tempDir, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * The dashboard stays truthful when things go wrong, in Chromium against real relays: a frozen
 * relay (SIGSTOP) does not stay "healthy, live"; topic subscriber counts come from the relay and
 * a huge topic list is capped; a refused tail pattern says why and stops; the tail reports what
 * the relay dropped; a failed Forget is shown, then cleared; the write latency of a quiet store
 * is not shown as current; and the relay caps the status streams one client may open.
 */
const WAIT = { timeout: 15_000 };

const publish = (relay: { url: string }, topic: string, data: unknown) =>
  fetch(`${relay.url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(data),
  }).then((res) => assert.equal(res.status, 202));

const bannerText = async (page: Page) =>
  ((await page.locator('[data-testid="banner"]').textContent()) ?? '').replace(/\s+/g, ' ').trim();

const waitForText = (page: Page, selector: string, pattern: RegExp, timeout = WAIT.timeout) =>
  page.waitForFunction(
    ([s, source, flags]) => new RegExp(source, flags).test(document.querySelector(s)?.textContent ?? ''),
    [selector, pattern.source, pattern.flags] as const,
    { timeout },
  );

describe('dashboard: liveness and limits', () => {
  let browser: BrowserContext;
  let profile: string;
  let relay: TestRelay;

  before(async () => {
    ensureDashboardBuilt();
    profile = await tempDir('anode-chromium-');
    browser = await launchChromium(profile);
    relay = await startRelay({ 'publish-rate': '100000', 'publish-burst': '100000' });
  });

  after(async () => {
    await browser?.close();
    await relay?.stop();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it('a frozen relay (SIGSTOP) leaves "healthy, live" within seconds, and comes back when resumed', async () => {
    const dataDir = await tempDir();
    const frozen = await spawnRelay(['--port', '0', '--data-dir', dataDir]);
    try {
      const { page, errors } = await openPage(browser, frozen.url);
      await waitForText(page, '[data-testid="banner"]', /All healthy[\s\S]*live, updated/);
      frozen.child.kill('SIGSTOP');
      const stoppedAt = Date.now();
      await waitForText(page, '[data-testid="banner"]', /problem/, 10_000);
      const left = Date.now() - stoppedAt;
      const text = await bannerText(page);
      assert.doesNotMatch(text, /All healthy|live, updated/);
      assert.match(text, /No status update for \d+s|status stream is disconnected/);
      assert.ok(left < 10_000, `left "healthy" after ${left} ms`);
      // Past the watchdog (5 s without a byte) the stream is given up and retried.
      await waitForText(page, '[data-testid="banner"]', /status stream is disconnected \(no data for 5 s\)/, 15_000);
      frozen.child.kill('SIGCONT');
      await waitForText(page, '[data-testid="banner"]', /All healthy[\s\S]*live, updated/, 30_000);
      assert.deepEqual(errors, []);
      await page.close();
    } finally {
      frozen.child.kill('SIGCONT');
      frozen.child.kill('SIGTERM');
      await frozen.exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('shows the subscriber counts the relay computes, and caps a huge topic list', async () => {
    const socket = await openSocket(`${relay.wsUrl}/v1/ws`);
    try {
      for (const [ref, topic] of [
        ['s1', 'room.>'],
        ['s2', 'room.r1.chat'],
      ]) {
        socket.send({ op: 'sub', topic, ref });
        assert.equal((await socket.next((f) => (f as { ref?: string }).ref === ref)).op, 'subscribed');
      }
      const topics = 250;
      for (let i = 0; i < topics; i += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, k) => publish(relay, `room.r${i + k}.chat`, { data: 1 })));
      }
      await publish(relay, 'room.r1.chat', { data: 2 }); // the most recent: shown
      const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
        topics: { topic: string; subscribers: number; matching_subscribers: number }[];
      };
      const count = (topic: string) => status.topics.find((t) => t.topic === topic);
      assert.deepEqual(
        [count('room.r1.chat')?.subscribers, count('room.r1.chat')?.matching_subscribers],
        [1, 2],
        'its own subscriber, and the pattern’s',
      );
      assert.deepEqual([count('room.r7.chat')?.subscribers, count('room.r7.chat')?.matching_subscribers], [0, 1]);

      const { page, errors } = await openPage(browser, relay.url);
      await waitForText(page, '[data-topic="room.r1.chat"] [data-field="subscribers"]', /^\s*2\s*$/);
      assert.equal(await page.locator('#topics tbody tr').count(), 200);
      assert.match(
        (await page.locator('[data-testid="topics-hidden"]').textContent()) ?? '',
        /\d+ more topics not shown/,
      );
      assert.deepEqual(errors, []);
      await page.close();
    } finally {
      socket.close();
    }
  });

  it('a refused tail pattern shows the relay’s reason and stops asking', async () => {
    const { page, errors } = await openPage(browser, relay.url);
    let requests = 0;
    page.on('request', (request) => void (request.url().includes('/v1/status/tail') && requests++));
    await page.locator('[data-testid="node-id"]').waitFor(WAIT);
    await page.getByLabel('Topic or pattern').fill('prices.*usd');
    await page.getByRole('button', { name: 'Watch' }).click();
    await waitForText(page, '[data-testid="tail-state"]', /refused: bad pattern segment "\*usd"/);
    await page.waitForTimeout(3_000);
    assert.doesNotMatch((await page.locator('[data-testid="tail-state"]').textContent()) ?? '', /reconnecting/);
    assert.equal(requests, 1, 'no retry of a refusal');
    // The browser logs the 400 itself; nothing else may fail.
    assert.deepEqual(
      errors.filter((e) => !/status of 400/.test(e)),
      [],
    );
    await page.close();
  });

  it('the tail shows how many messages the relay dropped', async () => {
    const { page, errors } = await openPage(browser, relay.url);
    await page.getByLabel('Topic or pattern').fill('flood.topic');
    await page.getByRole('button', { name: 'Watch' }).click();
    await waitForText(page, '[data-testid="tail-state"]', /: live/);
    // 120 at once: past the tail's 50 a second, the rest is dropped and reported.
    await publish(
      relay,
      'flood.topic',
      Array.from({ length: 120 }, (_, i) => ({ data: i })),
    );
    await waitForText(page, '[data-testid="tail-dropped"]', /\b(7\d|[89]\d|1\d\d) dropped by the relay/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('the write latency of a store with no recent writes is not shown as current', async () => {
    const { page, errors } = await openPage(browser, relay.url);
    await publish(relay, 'latency.topic', { data: 1 });
    await waitForText(page, '[data-testid="write-latency"]', /average of the latest sample/);
    await waitForText(page, '[data-testid="write-latency"]', /no writes lately; last [\d.]+ ms, \d+s ago/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('a failed Forget is shown in the banner, then cleared; a network error is no uncaught rejection', async () => {
    const real = (await (await fetch(`${relay.url}/v1/status`)).json()) as Record<string, unknown>;
    const down = {
      peer_id: '12D3KooWForgetTestPeer000000000000000000000000000',
      state: 'down',
      down_since: new Date().toISOString(),
    };
    const { page, errors } = await openPage(browser, 'about:blank');
    // The page's stream answers with a status that remembers one peer as down.
    await page.route('**/v1/status/stream', (route) =>
      route.fulfill({
        status: 200,
        headers: { 'content-type': 'text/event-stream' },
        body: `event: status\ndata: ${JSON.stringify({
          at: Date.now(),
          status: { ...real, peers: [], peers_down: [down] },
          metrics: {},
          samples: [],
        })}\n\n`,
      }),
    );
    await page.route('**/v1/mesh/peers/**', (route) => route.abort('connectionrefused'));
    await page.goto(relay.url);
    await page.getByRole('button', { name: 'Forget' }).click();
    await waitForText(page, '[data-testid="banner"]', /Forget 12D3Ko…000000: /);
    await waitForText(page, '[data-testid="banner"]', /^(?![\s\S]*Forget 12D3Ko)/, 25_000);
    assert.deepEqual(
      errors.filter((e) => !/ERR_CONNECTION_REFUSED/.test(e)),
      [],
    );
    await page.close();
  });

  it('the relay refuses a client’s ninth status stream with 429 limit_reached', async () => {
    const controller = new AbortController();
    try {
      const open = () => fetch(`${relay.url}/v1/status/stream`, { signal: controller.signal });
      const admitted = await Promise.all(Array.from({ length: 8 }, open));
      assert.deepEqual(
        admitted.map((r) => r.status),
        Array(8).fill(200),
      );
      const refused = await open();
      assert.equal(refused.status, 429);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'limit_reached');
    } finally {
      controller.abort();
    }
  });
});
