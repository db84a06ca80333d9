import assert from 'node:assert/strict';
import type { Envelope } from '@anode/shared';
import { ALLOWED_ORIGIN, LIMITS, METRICS_TOKEN } from './targets.ts';
import {
  type Acks,
  assertHttpError,
  type Case,
  eventually,
  type Frame,
  fresh,
  get,
  isOp,
  post,
  publish,
  request,
  roundTrip,
  tokenFor,
  topicSocket,
} from './support.ts';

type Page = { messages: Envelope[]; next: string | null };

/** HTTP routes (PROTOCOL.md "HTTP") and the dedup rule. */
export const httpCases: Case[] = [
  {
    name: 'POST takes one message or an array: 202 with ids and ascending cursors, stored in order',
    async run(target) {
      const topic = fresh('http');
      const token = await tokenFor('poster');
      const single = await post(target, topic, { data: { x: 1 } }, token);
      assert.equal(single.status, 202);
      const one = (single.body as Acks).messages;
      assert.equal(one.length, 1);
      assert.deepEqual(Object.keys(one[0] ?? {}).sort(), ['cursor', 'id']);
      const many = await post(target, topic, [{ data: 1 }, { data: 2, source: 's' }, { data: 3, ts: 7 }], token);
      assert.equal(many.status, 202);
      const acks = (many.body as Acks).messages;
      assert.equal(new Set(acks.map((a) => a.id)).size, 3);
      const cursors = acks.map((a) => a.cursor);
      assert.deepEqual([...cursors].sort(), cursors);
      assert.ok((one[0]?.cursor ?? '') < (cursors[0] ?? ''));
      const page = (await get(target, `/v1/topics/${topic}/messages`, token)).body as Page;
      assert.deepEqual(
        page.messages.map((m) => [m.id, m.cursor, m.data]),
        [[one[0]?.id, one[0]?.cursor, { x: 1 }], ...acks.map((a, i) => [a.id, a.cursor, i + 1])],
      );
      assert.equal(page.messages[2]?.source, 's');
      assert.equal(page.messages[3]?.ts, 7);
      assert.equal(page.messages[0]?.topic, topic);
    },
  },
  {
    name: 'history pages with after and limit; next is the last cursor of a full page and null at the end',
    async run(target) {
      const topic = fresh('http');
      const token = await tokenFor('pager');
      const cursors = (await publish(target, topic, token, [0, 1, 2, 3, 4])).map((a) => a.cursor);
      const seen: unknown[] = [];
      const nexts: (string | null)[] = [];
      let after = '';
      for (let i = 0; i < 5; i++) {
        const page = (await get(target, `/v1/topics/${topic}/messages?limit=2${after}`, token)).body as Page;
        seen.push(...page.messages.map((m) => m.data));
        nexts.push(page.next);
        if (page.next === null) break;
        after = `&after=${page.next}`;
      }
      assert.deepEqual(seen, [0, 1, 2, 3, 4]);
      assert.deepEqual(nexts, [cursors[1], cursors[3], null]);
      const tail = (await get(target, `/v1/topics/${topic}/messages?after=${cursors[4]}`, token)).body;
      assert.deepEqual(tail, { messages: [], next: null });
      const empty = (await get(target, `/v1/topics/${fresh('never')}/messages`, token)).body;
      assert.deepEqual(empty, { messages: [], next: null });
    },
  },
  {
    name: 'latest keeps the newest message by ts per source: an older ts never replaces a newer one',
    async run(target) {
      const topic = fresh('http');
      const token = await tokenFor('latest');
      for (const [source, ts, data] of [
        ['s1', 2000, 's1-newest'],
        ['s1', 1000, 's1-older'],
        ['s2', 500, 's2-first'],
        ['s2', 900, 's2-newest'],
        ['s1', 1999, 's1-almost'],
      ] as const) {
        assert.equal((await post(target, topic, { source, ts, data }, token)).status, 202);
      }
      const { sources } = (await get(target, `/v1/topics/${topic}/latest`, token)).body as {
        sources: Record<string, Envelope>;
      };
      assert.deepEqual(Object.keys(sources).sort(), ['s1', 's2']);
      assert.equal(sources.s1?.data, 's1-newest');
      assert.equal(sources.s1?.ts, 2000);
      assert.equal(sources.s2?.data, 's2-newest');
      assert.deepEqual((await get(target, `/v1/topics/${fresh('never')}/latest`, token)).body, { sources: {} });
    },
  },
  {
    name: 'latest pages with after_source and limit; next is the last source while more follow, absent at the end',
    async run(target) {
      const topic = fresh('http');
      const token = await tokenFor('latest-pager');
      // Published out of source order: a page is in source-name order, not arrival order.
      const names = ['d', 'b', 'e', 'a', 'c'];
      const posted = await post(
        target,
        topic,
        names.map((source, i) => ({ source, ts: 1000 + i, data: source })),
        token,
      );
      assert.equal(posted.status, 202);
      type LatestPage = { sources: Record<string, Envelope>; next?: string };
      const pages: string[][] = [];
      const nexts: (string | undefined)[] = [];
      let after = '';
      for (let i = 0; i < 5; i++) {
        const page = (await get(target, `/v1/topics/${topic}/latest?limit=2${after}`, token)).body as LatestPage;
        pages.push(Object.keys(page.sources).sort());
        for (const [source, envelope] of Object.entries(page.sources)) assert.equal(envelope.data, source);
        nexts.push(page.next);
        if (page.next === undefined) break;
        after = `&after_source=${page.next}`;
      }
      assert.deepEqual(pages, [['a', 'b'], ['c', 'd'], ['e']], 'every source once, in source order');
      assert.deepEqual(nexts, ['b', 'd', undefined]);
      const whole = (await get(target, `/v1/topics/${topic}/latest`, token)).body as LatestPage;
      assert.deepEqual(Object.keys(whole).sort(), ['sources'], 'one page: no next, as before paging');
      assert.deepEqual(Object.keys(whole.sources).sort(), ['a', 'b', 'c', 'd', 'e']);
      const tail = (await get(target, `/v1/topics/${topic}/latest?after_source=e`, token)).body;
      assert.deepEqual(tail, { sources: {} });
    },
  },
  {
    name: 'Idempotency-Key and key dedup: the same id and cursor, stored and delivered once',
    async run(target) {
      const topic = fresh('idem');
      const token = await tokenFor('idem');
      const sock = await topicSocket(target, topic, token);
      await sock.next(isOp('subscribed'));
      const first = await post(target, topic, { data: 'once' }, token, { 'idempotency-key': 'order-42' });
      const second = await post(target, topic, { data: 'twice' }, token, { 'idempotency-key': 'order-42' });
      const inBody = await post(target, topic, { data: 'thrice', key: 'order-42' }, token);
      sock.send({ op: 'pub', topic, data: 'by ws', key: 'order-42', ref: 'ws' });
      const wsAck = await sock.next<Frame<'ack'>>((f) => f.op === 'ack' && f.ref === 'ws');
      assert.equal(first.status, 202);
      assert.deepEqual(second.body, first.body);
      assert.deepEqual(inBody.body, first.body, 'the header stands for the body key');
      const [ack] = (first.body as Acks).messages;
      assert.deepEqual([wsAck.id, wsAck.cursor], [ack?.id, ack?.cursor]);
      await roundTrip(sock);
      assert.deepEqual(
        sock.frames.filter(isOp('msg')).map((m) => m.data),
        ['once'],
      );
      const page = (await get(target, `/v1/topics/${topic}/messages`, token)).body as Page;
      assert.deepEqual(
        page.messages.map((m) => m.data),
        ['once'],
      );
      const other = await post(target, topic, { data: 'elsewhere', key: 'order-42', source: 'other' }, token);
      assert.notEqual((other.body as Acks).messages[0]?.id, ack?.id, 'the key is scoped to topic and source');
      assertHttpError(
        await post(target, topic, [{ data: 1 }, { data: 2 }], token, { 'idempotency-key': 'k' }),
        400,
        'bad_frame',
      );
      sock.close();
    },
  },
  {
    name: 'a keyed republish long after the first is still deduplicated: stored id and cursor, delivered once',
    async run(target) {
      const topic = fresh('idem');
      const token = await tokenFor('idem-late');
      const first = await post(target, topic, { data: 'original', key: 'late-key' }, token);
      assert.equal(first.status, 202);
      // Enough newer messages that the first has left any short-term memory (the edge's ring), but
      // fewer than the retention, so the relay still stores it.
      await publish(
        target,
        topic,
        token,
        Array.from({ length: LIMITS.retained - 5 }, (_, i) => i),
      );
      await eventually(async () => {
        const status = (await get(target, `/v1/status?topic=${topic}`, METRICS_TOKEN)).body as {
          topic?: { outbox?: number };
        };
        return (status.topic?.outbox ?? 0) === 0;
      }, 'the relay to ack what the edge forwarded');
      const sock = await topicSocket(target, topic, token);
      await sock.next(isOp('subscribed'));
      const again = await post(target, topic, { data: 'republished', key: 'late-key' }, token);
      assert.deepEqual(again.body, first.body, 'the stored id and cursor');
      await roundTrip(sock);
      assert.equal(sock.frames.filter(isOp('msg')).length, 0, 'not delivered again');
      sock.close();
    },
  },
  {
    name: 'serves /healthz to all, and /metrics (Prometheus text) and /v1/status to the metrics token when auth is on',
    async run(target) {
      assert.deepEqual(await request(`${target.url}/healthz`), { status: 200, body: { ok: true } });
      assertHttpError(await get(target, '/metrics'), 401, 'unauthorized');
      assertHttpError(await get(target, '/v1/status', 'not-the-metrics-token'), 401, 'unauthorized');
      const metrics = await fetch(`${target.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      assert.equal(metrics.status, 200);
      assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(await metrics.text(), /^# (HELP|TYPE) anode_/m);
      const status = await get(target, '/v1/status', METRICS_TOKEN);
      assert.equal(status.status, 200);
      const { node } = status.body as { node: { id: string; version: string; protocol?: number } };
      assert.equal(typeof node.id, 'string');
      assert.ok(node.version.length > 0);
    },
  },
  {
    name: 'CORS: the configured origin may call the HTTP API from a browser; other origins get no grant',
    async run(target) {
      const topic = fresh('cors');
      const token = await tokenFor('browser');
      const preflight = await fetch(`${target.url}/v1/topics/${topic}/messages`, {
        method: 'OPTIONS',
        headers: {
          origin: ALLOWED_ORIGIN,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type',
        },
      });
      await preflight.body?.cancel();
      assert.ok(preflight.status === 204 || preflight.status === 200, `preflight answered ${preflight.status}`);
      assert.equal(preflight.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
      assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/);
      assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /authorization/i);

      const allowed = await fetch(`${target.url}/v1/topics/${topic}/messages`, {
        headers: { origin: ALLOWED_ORIGIN, authorization: `Bearer ${token}` },
      });
      assert.equal(allowed.status, 200);
      assert.equal(allowed.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
      await allowed.body?.cancel();
      const refused = await fetch(`${target.url}/v1/topics/${topic}/messages`, {
        headers: { origin: ALLOWED_ORIGIN },
      });
      assert.equal(refused.status, 401);
      assert.equal(refused.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN, 'errors are readable too');
      await refused.body?.cancel();
      const other = await fetch(`${target.url}/v1/topics/${topic}/messages`, {
        headers: { origin: 'https://evil.example', authorization: `Bearer ${token}` },
      });
      assert.equal(other.headers.get('access-control-allow-origin'), null);
      await other.body?.cancel();
    },
  },
];
