import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Feeds, startFeeds, waitFor } from '../helpers/feeds.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';

type Status = {
  name: string;
  state: string;
  consecutive_failures: number;
  last_error: { message: string } | null;
  last_success_at: string | null;
  lag_ms: number;
  next_attempt_at: string | null;
  attempting: boolean;
};

const INTERVAL = 200;
const HEALTHY = 30;
const faulty = {
  'f-500': 'error',
  'f-garbage': 'garbage',
  'f-hang-1': 'hang',
  'f-hang-2': 'hang',
  'f-hang-3': 'hang',
} as const;

describe('sources: failing upstreams', () => {
  let feeds: Feeds;
  let relay: TestRelay;
  const healthy = Array.from({ length: HEALTHY }, (_, i) => `ok${i}`);
  const status = async () =>
    new Map(
      ((await (await fetch(`${relay.url}/v1/status`)).json()) as { sources: Status[] }).sources.map((s) => [s.name, s]),
    );

  before(async () => {
    feeds = await startFeeds();
    const common = {
      interval_ms: INTERVAL,
      timeout_ms: 300,
      backoff_max_ms: 400,
      items_path: '$.items',
      id_path: '$.id',
    };
    const http = [...healthy, ...Object.keys(faulty)].map((name) => ({
      name,
      kind: 'http',
      url: feeds.httpUrl(name),
      topic: `f.${name}`,
      ...common,
    }));
    const ws = { name: 'f-ws', kind: 'websocket', url: feeds.wsUrl('f-ws'), topic: 'f.ws', heartbeat_ms: 200 };
    const closedPort = { name: 'f-refused', kind: 'websocket', url: 'ws://127.0.0.1:1/none', topic: 'f.refused' };
    for (const [name, mode] of Object.entries(faulty)) feeds.setMode(name, mode);
    for (const name of healthy) feeds.push(name, { id: `${name}-0`, ts: Date.now() });
    // Four slots: three are taken by hanging polls until their timeout; the rest must still flow.
    relay = await startRelay({
      sources: JSON.stringify([...http, { ...ws, backoff_min_ms: 50, backoff_max_ms: 200 }, closedPort]),
      'source-concurrency': '4',
    });
  });

  after(async () => {
    await relay?.stop();
    await feeds?.stop();
  });

  it('shows each failure, and does not delay healthy sources beyond their interval', async () => {
    const s = await waitFor(
      async () => {
        const all = await status();
        return [...Object.keys(faulty), 'f-refused'].every((n) => (all.get(n)?.consecutive_failures ?? 0) >= 2)
          ? all
          : undefined;
      },
      10_000,
      'every faulty source to fail twice',
    );
    assert.match(s.get('f-500')?.last_error?.message ?? '', /HTTP 500/);
    assert.match(s.get('f-garbage')?.last_error?.message ?? '', /invalid JSON/);
    assert.match(s.get('f-hang-1')?.last_error?.message ?? '', /no answer within 300 ms/);
    assert.match(s.get('f-refused')?.last_error?.message ?? '', /ECONNREFUSED/);
    for (const name of [...Object.keys(faulty), 'f-refused']) {
      assert.equal(s.get(name)?.state, 'failing', name);
      assert.ok(s.get(name)?.next_attempt_at || s.get(name)?.attempting, name);
    }
    // Healthy sources poll every INTERVAL. Sources starved by the hanging ones (each holds a slot
    // for its 300 ms timeout) would poll ~500 ms apart, most of the time: the median gap catches
    // that. Each bound on its own allows a stall of the shared event loop (35 sources, the feed
    // server and the relay on one loop of a two-core machine) of up to 2 × INTERVAL. The first two
    // polls of each source are left out: they start cold (first connection, first compile).
    const steady: number[] = [];
    for (const name of healthy) {
      const h = s.get(name) as Status;
      assert.equal(h.state, 'ok', name);
      assert.ok(h.lag_ms <= 2 * INTERVAL, `${name} started ${h.lag_ms} ms late`);
      const hits = feeds.hits(name).slice(2);
      const gaps = hits.slice(1).map((t, i) => t - (hits[i] as number));
      assert.ok(gaps.length >= 1, `${name} polled ${hits.length + 2} times`);
      assert.ok(Math.max(...gaps) <= 3 * INTERVAL + 50, `${name} gaps ${gaps.join(',')}`);
      steady.push(...gaps);
    }
    const median = steady.sort((a, b) => a - b)[Math.floor(steady.length / 2)] as number;
    assert.ok(median <= INTERVAL + 50, `healthy sources polled a median ${median} ms apart`);
    const metrics = await (await fetch(`${relay.url}/metrics`)).text();
    assert.match(metrics, /anode_source_up\{source="f-500"\} 0/);
    assert.match(metrics, /anode_source_up\{source="ok0"\} 1/);
    assert.match(metrics, /anode_source_consecutive_failures\{source="f-garbage"\} [1-9]/);
    assert.match(metrics, /anode_source_errors_total\{source="f-hang-2"\} [1-9]/);
  });

  it('recovers each source when its upstream recovers', async () => {
    for (const name of Object.keys(faulty)) {
      feeds.setMode(name, 'ok');
      feeds.push(name, { id: `${name}-back`, ts: Date.now() });
    }
    await waitFor(() => feeds.connections('f-ws') === 1, 5_000, 'ws connected');
    const s = await waitFor(
      async () => {
        const all = await status();
        return Object.keys(faulty).every((n) => all.get(n)?.state === 'ok') ? all : undefined;
      },
      10_000,
      'faulty sources to recover',
    );
    for (const name of Object.keys(faulty)) {
      assert.equal(s.get(name)?.consecutive_failures, 0);
      assert.ok(s.get(name)?.last_success_at);
    }
  });

  it('reconnects a WebSocket source whose upstream closes or stops answering', async () => {
    await waitFor(async () => (await status()).get('f-ws')?.state === 'connected', 5_000, 'f-ws connected');
    feeds.drop('f-ws');
    await waitFor(async () => (await status()).get('f-ws')?.last_error?.message.includes('closed by upstream'), 5_000);
    await waitFor(async () => (await status()).get('f-ws')?.state === 'connected', 5_000, 'f-ws reconnected');
    feeds.push('f-ws', { id: 'ws-1', ts: Date.now() });
    await waitFor(
      async () => {
        const body = (await (await fetch(`${relay.url}/v1/topics/f.ws/latest`)).json()) as {
          sources: Record<string, { data: { items: { id: string }[] } }>;
        };
        return body.sources['f-ws']?.data.items.some((i) => i.id === 'ws-1');
      },
      5_000,
      'ws-1 ingested',
    );
    feeds.freeze('f-ws');
    await waitFor(
      async () => (await status()).get('f-ws')?.last_error?.message.includes('heartbeat'),
      5_000,
      'heartbeat',
    );
    await waitFor(async () => (await status()).get('f-ws')?.state === 'connected', 5_000, 'f-ws reconnected again');
  });
});
