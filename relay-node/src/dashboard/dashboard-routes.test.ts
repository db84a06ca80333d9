import assert from 'node:assert/strict';
import { once } from 'node:events';
import { get, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { serve } from '@hono/node-server';
import { AnodeError } from '@anode/shared';
import { Hono } from 'hono';
import { createDashboardRoutes, type DashboardLimits } from './dashboard-routes.ts';

const INTERVAL_MS = 100;

/** The routes on a real HTTP server (so client addresses are real), with a status that counts its reads. */
async function serveRoutes(limits: Partial<DashboardLimits> = {}) {
  const counts = { statusReads: 0 };
  const routes = createDashboardRoutes({
    adminToken: undefined,
    authOn: false,
    intervalMs: INTERVAL_MS,
    limits,
    status: async () => {
      counts.statusReads += 1;
      return JSON.stringify({ node: { id: 'node-1' }, topics: [] });
    },
    metrics: async () => ({
      published_total: 0,
      delivered_total: 0,
      errors_total: 0,
      publish_latency: { sum_s: 0, count: 0 },
      store_append: { sum_s: 0, count: 0 },
    }),
    samples: () => [],
    tail: { subscribe: async () => undefined, removeSubscriber: () => {} },
  });
  const app = new Hono();
  // As the relay's app does (server/http-app.ts): an AnodeError answers with its code and status.
  app.onError((error, c) =>
    error instanceof AnodeError ? c.json({ error: error.toJSON() }, error.status as 429) : c.json({}, 500),
  );
  routes.mount(app);
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server;
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const streams: { close(): void }[] = [];

  /** Open a stream from a local address (every 127.x address reaches the loopback). */
  const open = async (path: string, from = '127.0.0.1') => {
    const request = get({ host: '127.0.0.1', port, path, localAddress: from });
    const [response] = (await once(request, 'response')) as [IncomingMessage];
    const stream = { status: response.statusCode, text: '', close: () => request.destroy() };
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => (stream.text += chunk));
    response.on('error', () => {});
    request.on('error', () => {});
    streams.push(stream);
    if (stream.status !== 200) await once(response, 'end');
    return stream;
  };
  const stop = async () => {
    for (const stream of streams) stream.close();
    routes.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return { open, counts, stop };
}

const until = async (what: string, test: () => boolean, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

const eventsIn = (text: string) => text.split('event: status').length - 1;
const errorOf = (text: string) => (JSON.parse(text) as { error: { code: string; message: string } }).error;

describe('dashboard routes', () => {
  let stop: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
  });

  it('reads the status once per interval for all open status streams, not once per stream', async () => {
    const relay = await serveRoutes();
    stop = relay.stop;
    const streams = await Promise.all(Array.from({ length: 6 }, () => relay.open('/v1/status/stream')));
    await until('the first events', () => streams.every((s) => eventsIn(s.text) >= 1));
    const before = relay.counts.statusReads;
    const started = Date.now();
    await until('ten more events on every stream', () => streams.every((s) => eventsIn(s.text) >= 11), 10_000);
    const intervals = (Date.now() - started) / INTERVAL_MS;
    const reads = relay.counts.statusReads - before;
    // One read per interval (plus slack for timer drift), where one per stream would be 6 per interval.
    assert.ok(reads <= intervals + 2, `${reads} status reads in ${intervals.toFixed(1)} intervals for 6 streams`);
    const first = streams[0]?.text.split('\n').find((line) => line.startsWith('data: '));
    const event = JSON.parse(first?.slice(6) ?? '{}') as { at: number; status: { node: { id: string } } };
    assert.equal(event.status.node.id, 'node-1', 'each event still carries the status object');
  });

  it('caps status streams per client address and in total, with 429 limit_reached', async () => {
    const relay = await serveRoutes({ streamsPerClient: 2, streams: 3 });
    stop = relay.stop;
    const a1 = await relay.open('/v1/status/stream', '127.0.0.1');
    const a2 = await relay.open('/v1/status/stream', '127.0.0.1');
    assert.deepEqual([a1.status, a2.status], [200, 200]);
    const a3 = await relay.open('/v1/status/stream', '127.0.0.1');
    assert.equal(a3.status, 429);
    assert.equal(errorOf(a3.text).code, 'limit_reached');
    assert.match(errorOf(a3.text).message, /per client address/);
    const b1 = await relay.open('/v1/status/stream', '127.0.0.2');
    assert.equal(b1.status, 200, 'another address has its own share');
    const c1 = await relay.open('/v1/status/stream', '127.0.0.3');
    assert.equal(c1.status, 429, 'but not past the total');
    assert.match(errorOf(c1.text).message, /at once/);
    a1.close();
    await new Promise((resolve) => setTimeout(resolve, 300)); // the server sees the close
    const c2 = await relay.open('/v1/status/stream', '127.0.0.3');
    assert.equal(c2.status, 200, 'a closed stream frees its slot');
  });

  it('caps topic tails the same way', async () => {
    const relay = await serveRoutes({ tailsPerClient: 1, tails: 2 });
    stop = relay.stop;
    assert.equal((await relay.open('/v1/status/tail?topic=a.b', '127.0.0.1')).status, 200);
    const second = await relay.open('/v1/status/tail?topic=a.c', '127.0.0.1');
    assert.equal(second.status, 429);
    assert.equal(errorOf(second.text).code, 'limit_reached');
    assert.equal((await relay.open('/v1/status/tail?topic=a.b', '127.0.0.2')).status, 200);
    assert.equal((await relay.open('/v1/status/tail?topic=a.b', '127.0.0.3')).status, 429);
  });

  it('refuses a tail pattern the WebSocket refuses, with 400 bad_topic and why', async () => {
    const relay = await serveRoutes();
    stop = relay.stop;
    for (const [topic, why] of [
      ['a.>.b', /`>` may only be the last segment/],
      ['prices.*usd', /bad pattern segment/],
      ['a b', /bad pattern segment/],
    ] as const) {
      const refused = await relay.open(`/v1/status/tail?topic=${encodeURIComponent(topic)}`);
      assert.equal(refused.status, 400, topic);
      assert.equal(errorOf(refused.text).code, 'bad_topic');
      assert.match(errorOf(refused.text).message, why);
    }
    assert.equal((await relay.open(`/v1/status/tail?topic=${encodeURIComponent('prices.>')}`)).status, 200);
  });

  it('a quiet tail sends a ping comment, so the page can tell it from a dead connection', async () => {
    const relay = await serveRoutes();
    stop = relay.stop;
    const tail = await relay.open('/v1/status/tail?topic=quiet.topic');
    await until('a ping', () => tail.text.includes(': ping\n\n'), 5_000);
  });
});
