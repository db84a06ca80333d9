import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UnavailableError } from '../../shared/src/errors.ts';
import { CURSOR_ZERO } from '../../shared/src/ids.ts';
import type { MessageStore } from '../../shared/src/ports/message-store.ts';
import { createClient } from './client.ts';

/**
 * The real relay, in this process. Imported by a path the type checker does not follow: the
 * client is type-checked without Node's types (it must run in browsers), and the relay needs them.
 */
interface RelayHelpers {
  tempDir(): Promise<string>;
  startRelay(
    flags?: Record<string, string>,
    options?: { dataDir?: string; wrapStore?: (store: MessageStore) => MessageStore },
  ): Promise<{ url: string; wsUrl: string; stop(): Promise<void> }>;
}
const relayHelpers = '../../test/helpers/relay.ts';
const { startRelay, tempDir } = (await import(relayHelpers)) as RelayHelpers;

async function until(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('a subscription whose resume the node refused for now misses nothing another subscription brought meanwhile', async () => {
  const dataDir = await tempDir();
  let relay = await startRelay({}, { dataDir });
  const port = new URL(relay.url).port;
  const client = createClient({ url: relay.wsUrl, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  client.on('error', () => {}); // the refusals; asserted on by the e2e suite
  let other: ReturnType<typeof createClient> | undefined;
  try {
    const pattern: unknown[] = [];
    const topic: unknown[] = [];
    const p = client.subscribe('rr.>', (m) => pattern.push(m.data));
    const a = client.subscribe('rr.a', (m) => topic.push(m.data));
    await Promise.all([p.ready, a.ready]);
    await client.publish('rr.a', 'a1');
    await until(() => pattern.length === 1 && topic.length === 1, 'a1 at both subscriptions');
    await relay.stop();

    // Fault-injection test double: the restarted relay cannot list its topics, so it refuses the
    // pattern's resume as `unavailable` while the topic's resume (one topic's history) goes on.
    let down = true;
    let refusals = 0;
    const topicsDown = (store: MessageStore): MessageStore => ({
      ...store,
      topics: async () => {
        if (!down) return store.topics();
        refusals += 1;
        throw new UnavailableError('cannot list topics (test double)');
      },
    });
    relay = await startRelay({ port }, { dataDir, wrapStore: topicsDown });
    await until(() => refusals > 0 && client.connected, "the pattern's resume refused");
    other = createClient({ url: relay.wsUrl });
    await other.publish('rr.b', 'b2'); // only the pattern matches: it comes with the pattern's resume
    await other.publish('rr.a', 'a3'); // both match: it comes live through the topic's subscription
    await until(() => topic.length === 2, 'a3 at the topic');
    down = false;
    await until(() => pattern.length === 3, `the pattern's missed messages (has ${JSON.stringify(pattern)})`, 5_000);
    // All of them, once. Usually in cursor order; a retry of the resume that was on its way when a3
    // came live (then refused again) had the pattern take it first, before its replay of b2.
    assert.deepEqual([...pattern].sort(), ['a1', 'a3', 'b2'], 'all of them, once');
    assert.deepEqual(topic, ['a1', 'a3']);
  } finally {
    await other?.close();
    await client.close();
    await relay.stop();
  }
});

test('reconnect options given as undefined, null, NaN or below 0 take their defaults instead of redialling without a pause', async () => {
  const relay = await startRelay();
  await relay.stop(); // the port is free now: connections are refused
  // As a caller passes settings through: `{ maxDelayMs: settings.maxDelayMs }` with none set, JSON's
  // null, Number() of an unset variable (a review: null made 71 attempts in 500 ms).
  for (const unset of [undefined, null, Number.NaN, -1]) {
    const value = unset as unknown as number;
    const client = createClient({ url: relay.url, reconnect: { initialDelayMs: value, maxDelayMs: value } });
    client.on('error', () => {});
    const delays: number[] = [];
    client.on('reconnecting', ({ delayMs }) => delays.push(delayMs));
    try {
      await new Promise((resolve) => setTimeout(resolve, 600));
      // The defaults (250 ms growing to 10 s), each delay jittered down to as little as 125 ms: at
      // most 1 + 600 / 125 = 5 attempts in 600 ms (a bound of 3 failed in CI when the jitter drew
      // 3 short delays in a row; the bug this guards against made 71).
      assert.ok(delays.length <= 5, `${String(unset)}: ${delays.length} reconnects in 600 ms`);
      assert.ok(
        delays.every((ms) => ms >= 125 && ms <= 10_000),
        `${String(unset)}: delays ${delays.slice(0, 10).join(', ')}`,
      );
    } finally {
      await client.close();
    }
  }
});

test('close() while a token function has not answered leaves no timer that keeps the process alive', async () => {
  const { process } = globalThis as unknown as { process: { getActiveResourcesInfo(): string[] } };
  const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
  const before = timers();
  // Never dialled: the token function (an auth server that hangs) never answers.
  const client = createClient({ url: 'ws://127.0.0.1:9', token: () => new Promise<string>(() => {}) });
  const closes: number[] = [];
  client.on('close', ({ code }) => closes.push(code));
  await new Promise((resolve) => setTimeout(resolve, 50));
  await client.close();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(timers(), before, 'the wait for the token (up to pingIntervalMs, 30 s) ended with close()');
  assert.deepEqual(closes, [], 'no connection was made, so none closed');
});

test("the reason a runtime's WebSocket gives for refusing a URL is shown without the token, encoded or not", async () => {
  // A test double for a runtime whose refusal quotes the URL (WebKit: "Wrong url scheme for WebSocket <url>").
  class QuotingWebSocket {
    constructor(url: string) {
      throw new Error(`Wrong url scheme for WebSocket ${url}`);
    }
  }
  const token = 'c2VjcmV0K3Rva2Vu/w==+more';
  const client = createClient({
    url: 'ws://127.0.0.1:9',
    token,
    WebSocket: QuotingWebSocket as unknown as typeof WebSocket,
  });
  const errors: string[] = [];
  client.on('error', (error) => errors.push(error.message));
  await assert.rejects(client.ready);
  assert.equal(errors.length, 1);
  for (const form of [token, encodeURIComponent(token), new URLSearchParams({ token }).toString().slice(6)]) {
    assert.ok(!(errors[0] ?? '').includes(form), `${errors[0]} shows ${form}`);
  }
  await client.close();
});

test("a URL the runtime's WebSocket refuses ends the client with that reason instead of an unhandled rejection", async () => {
  const { process } = globalThis as unknown as { process: NodeLike };
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  // Node's own WebSocket takes ws: and wss: only; `ws+unix:` is for the `ws` package's.
  const client = createClient({ url: 'ws+unix:///tmp/anode-none.sock:/v1/ws', token: 'secret-token' });
  const errors: string[] = [];
  client.on('error', (error) => errors.push(error.message));
  try {
    const settled = await Promise.race([
      client.ready.then(
        () => 'opened',
        (error: Error) => error.message,
      ),
      new Promise((resolve) => setTimeout(() => resolve('ready still pending after 2 s'), 2_000)),
    ]);
    assert.match(String(settled), /WebSocket refused ws\+unix:.*expected a ws: or wss: url/);
    assert.doesNotMatch(String(settled), /secret-token/, 'the token is not shown');
    assert.equal(errors.length, 1, `one error event: ${errors.join(' | ')}`);
    await assert.rejects(client.publish('wr.t', 1), /WebSocket refused/);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await client.close();
  }
});

interface NodeLike {
  on(event: 'unhandledRejection', listener: (reason: unknown) => void): void;
  off(event: 'unhandledRejection', listener: (reason: unknown) => void): void;
}

test('a dedupWindow given as NaN keeps its default: a replay hands a new subscription every message, not only its first', async () => {
  const relay = await startRelay();
  // As a caller passes a setting through: Number() of an unset variable is NaN.
  const client = createClient({ url: relay.wsUrl, dedupWindow: Number(undefined) });
  try {
    const live: unknown[] = [];
    await client.subscribe('dw.t', (m) => live.push(m.data)).ready;
    for (const n of [1, 2, 3, 4, 5]) await client.publish('dw.t', n);
    await until(() => live.length === 5, 'the five live messages');
    const replayed: unknown[] = [];
    await client.subscribe('dw.>', (m) => replayed.push(m.data), { after: CURSOR_ZERO }).ready;
    await client.ping();
    assert.deepEqual(replayed, [1, 2, 3, 4, 5]);
  } finally {
    await client.close();
    await relay.stop();
  }
});
