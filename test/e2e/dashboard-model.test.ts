import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyEvent,
  emptyModel,
  latestWriteLatency,
  MAX_TOPIC_ROWS,
  type Series,
} from '@anode/relay-node/dashboard/src/model.ts';
import type { RelayStatus } from '@anode/relay-node/src/dashboard/status-schema.ts';
import { statusEventOf } from '../helpers/status-event.ts';

/**
 * The dashboard page's model (pure, no DOM): what it does with a large status, how it reads a
 * peer's storage, and which write latency it calls current. The page itself is driven in
 * Chromium by dashboard-live.test.ts.
 */
const baseStatus = (over: Partial<RelayStatus> = {}): RelayStatus => ({
  node: {
    id: 'node-self',
    version: '1',
    protocol: 1,
    uptime_s: 1,
    started_at: new Date().toISOString(),
    url: '',
    auth: 'none',
    max_message_bytes: 1,
  },
  store: { kind: 'embedded', ok: true, queued: 0 },
  connections: 0,
  subscriptions: 0,
  subscribers: {},
  topics: [],
  ...over,
});

const eventOf = statusEventOf;

describe('dashboard model', () => {
  it('takes each topic’s subscriber count from the status, never matching topics against patterns', () => {
    const N = 10_000;
    const plain: Record<string, number> = {};
    for (let i = 0; i < N; i++) plain[`room.r${i}.*`] = 1;
    // Every read of the subscriber map is counted: the old page matched all 10,000 patterns
    // against each of the 10,000 topics (10^8 steps) on every one-second event.
    let reads = 0;
    const BUDGET = 10 * N;
    const subscribers = new Proxy(plain, {
      get(target, key, receiver) {
        if (++reads > BUDGET) throw new Error(`subscriber map read more than ${BUDGET} times`);
        return Reflect.get(target, key, receiver) as unknown;
      },
      ownKeys(target) {
        if (++reads > BUDGET) throw new Error(`subscriber map read more than ${BUDGET} times`);
        return Reflect.ownKeys(target);
      },
    });
    const topics = Array.from({ length: N }, (_, i) => ({
      topic: `room.r${i}.chat`,
      published: i,
      delivered: i,
      subscribers: 0,
      matching_subscribers: 3,
      last_cursor: null,
      last_published_at: i,
    }));
    const status = baseStatus({ subscribers, topics, subscriptions: N });
    let model = applyEvent(emptyModel(), eventOf(status, 1_000));
    model = applyEvent(model, eventOf(status, 2_000));
    assert.ok(reads <= BUDGET, `${reads} reads`);
    assert.equal(model.topics.length, N);
    assert.ok(
      model.topics.every((t) => t.subscribers === 3),
      'the relay’s count (matching_subscribers) is shown',
    );
    // The page renders a bounded number of rows: the most recently published ones, in name order.
    assert.equal(model.shownTopics.length, MAX_TOPIC_ROWS);
    const shown = model.shownTopics.map((t) => t.topic);
    assert.ok(shown.includes(`room.r${N - 1}.chat`) && !shown.includes('room.r0.chat'), 'the recent ones');
    assert.deepEqual(shown, [...shown].sort(), 'in name order');
  });

  it('a peer whose storage is spooling (or has a spool) is a problem, not ✓', () => {
    const peer = (id: string, store: Record<string, unknown>) => ({
      peer_id: `peer-${id}`,
      state: 'up',
      card: { node: { id }, store: { kind: 'cassandra', ok: true, queued: 0, ...store } },
    });
    const status = baseStatus({
      peers: [
        peer('node-spooling', { state: 'spooling', spool_depth: 12 }),
        peer('node-draining', { state: 'connected', spool_depth: 3 }),
        peer('node-fine', { state: 'connected', spool_depth: 0 }),
      ],
    });
    const model = applyEvent(emptyModel(), eventOf(status));
    const health = Object.fromEntries(model.relays.map((r) => [r.name, r.store_health]));
    assert.deepEqual(health, {
      'node-self': 'ok',
      'node-spooling': 'warn',
      'node-draining': 'warn',
      'node-fine': 'ok',
    });
    assert.deepEqual(model.problems, [
      'Relay node-draining: storage is spooling: 3 messages waiting',
      'Relay node-spooling: storage is spooling: 12 messages waiting',
    ]);
  });

  it('calls a write latency current only when the latest sample has writes', () => {
    const series = (values: (number | null)[]): Series => ({
      time: values.map((_, i) => 100 + i * 2),
      published: values.map(() => 0),
      delivered: values.map(() => 0),
      publish_latency_ms: values.map(() => null),
      store_append_ms: values,
    });
    assert.deepEqual(latestWriteLatency(series([5, null, 7])), { ms: 7, at: 104_000, current: true });
    assert.deepEqual(latestWriteLatency(series([5, 9, null, null])), { ms: 9, at: 102_000, current: false });
    assert.deepEqual(latestWriteLatency(series([null])), { ms: null, at: null, current: false });
  });
});
