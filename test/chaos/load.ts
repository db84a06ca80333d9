import { compareCursors, CURSOR_ZERO, type Envelope, randomId } from '@anode/shared';
import { createClient } from '@anode/client';

/**
 * Publishers and subscribers of a chaos run, over the public interfaces only: the client
 * library on each relay's WebSocket (reconnect, resume, dedup), HTTP publishes with idempotency
 * keys, and the edge Worker's HTTP and one-topic WebSocket. Every ack and every delivery is
 * recorded for the final checks.
 */
export interface Acked {
  id: string;
  topic: string;
  cursor: string;
  via: string;
  at: number;
}

export interface Delivery {
  id: string;
  topic: string;
  cursor: string;
  at: number;
}

export interface Subscriber {
  name: string;
  /** Topics whose every message this subscriber must receive. */
  covers: (topic: string) => boolean;
  delivered: Delivery[];
  /** Message frames that reached the client, duplicates included. */
  raw(): number;
  /** Settles once the subscription is live (the load must not start before: it would be missed). */
  ready: Promise<void>;
  close(): void;
}

export interface Publisher {
  name: string;
  unacked(): number;
  stop(): Promise<void>;
}

export const RELAY_TOPICS = ['chaos.a', 'chaos.b', 'chaos.c'];
export const EDGE_TOPIC = 'chaos.e';

/** A WebSocket that counts every `msg` frame it is given, before the client library dedups. */
function countingWebSocket(count: () => void): new (url: string) => WebSocket {
  return class extends WebSocket {
    constructor(url: string) {
      super(url);
      this.addEventListener('message', (event) => {
        if (String(event.data).startsWith('{"op":"msg"')) count();
        else if (/"op"\s*:\s*"msg"/.test(String(event.data))) count();
      });
    }
  };
}

const RECONNECT = { initialDelayMs: 100, maxDelayMs: 2_000 };

export function relaySubscriber(name: string, wsUrl: string, token: string): Subscriber {
  let raw = 0;
  const delivered: Delivery[] = [];
  const client = createClient({
    url: wsUrl,
    token,
    reconnect: RECONNECT,
    dedupWindow: 1_000_000,
    WebSocket: countingWebSocket(() => (raw += 1)),
  });
  const sub = client.subscribe('chaos.>', (m) =>
    delivered.push({ id: m.id, topic: m.topic, cursor: m.cursor, at: Date.now() }),
  );
  return { name, covers: () => true, delivered, raw: () => raw, ready: sub.ready, close: () => client.close() };
}

/**
 * The edge subscriber uses the one-topic endpoint by hand (the client library, which speaks
 * `/v1/ws`, works at the edge too since issue 15; the relays' subscribers use it): reconnect with
 * `?after=<last cursor>` and drop ids it has seen.
 */
export function edgeSubscriber(name: string, edgeWsUrl: string, token: string): Subscriber {
  let raw = 0;
  let cursor: string | undefined;
  let closed = false;
  let socket: WebSocket | undefined;
  const seen = new Set<string>();
  const delivered: Delivery[] = [];
  const connect = () => {
    if (closed) return;
    // The first connection resumes from the topic's start: a subscription without `after` takes
    // effect at `subscribed`, which this subscriber does not wait for before the load starts.
    const after = `&after=${cursor ?? CURSOR_ZERO}`;
    const ws = new WebSocket(`${edgeWsUrl}/v1/topics/${EDGE_TOPIC}/ws?token=${token}${after}`);
    socket = ws;
    ws.addEventListener('message', (event) => {
      const frame = JSON.parse(String(event.data)) as { op: string } & Envelope;
      if (frame.op !== 'msg') return;
      raw += 1;
      if (cursor === undefined || compareCursors(frame.cursor, cursor) > 0) cursor = frame.cursor;
      if (seen.has(frame.id)) return;
      seen.add(frame.id);
      delivered.push({ id: frame.id, topic: frame.topic, cursor: frame.cursor, at: Date.now() });
    });
    ws.addEventListener('close', () => setTimeout(connect, 250));
    ws.addEventListener('error', () => {});
  };
  connect();
  return {
    name,
    covers: (topic) => topic === EDGE_TOPIC,
    delivered,
    raw: () => raw,
    // It resumes from the topic's start, so it misses nothing published before it is live.
    ready: Promise.resolve(),
    close: () => {
      closed = true;
      socket?.close();
    },
  };
}

export interface PublisherOptions {
  name: string;
  record: (ack: Acked) => void;
  /** Messages per second. */
  rate: number;
  pick: () => number;
}

/** Publishes through the client library on one relay's WebSocket; unacked publishes are resent by the library. */
export function wsPublisher(options: PublisherOptions & { wsUrl: string; token: string }): Publisher {
  const client = createClient({
    url: options.wsUrl,
    token: options.token,
    reconnect: RECONNECT,
    publishTimeoutMs: 60_000,
  });
  let inFlight = 0;
  let n = 0;
  const pending = new Set<Promise<void>>();
  const timer = setInterval(() => {
    if (inFlight >= 200) return; // a paused relay: do not queue without bound
    const topic = RELAY_TOPICS[options.pick() % RELAY_TOPICS.length] ?? 'chaos.a';
    inFlight += 1;
    n += 1;
    const done = client
      .publish(topic, { p: options.name, n })
      .then(
        (ack) => options.record({ id: ack.id, topic, cursor: ack.cursor, via: options.name, at: Date.now() }),
        () => {}, // not acked within the timeout: outcome unknown, not counted
      )
      .finally(() => {
        inFlight -= 1;
        pending.delete(done);
      });
    pending.add(done);
  }, 1000 / options.rate);
  return {
    name: options.name,
    unacked: () => inFlight,
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      client.close();
    },
  };
}

/**
 * Publishes batches over HTTP to a relay (or the edge), retrying the same batch, same
 * idempotency keys, on failure: a retry can never publish twice.
 */
export function httpPublisher(
  options: PublisherOptions & { urls: () => string[]; token: string; topics: string[]; batch: number },
): Publisher {
  let stopped = false;
  let inFlight = 0;
  let n = 0;
  const loop = async () => {
    while (!stopped) {
      const items = Array.from({ length: 1 + (options.pick() % options.batch) }, () => {
        n += 1;
        return { data: { p: options.name, n }, key: randomId() };
      });
      const topic = options.topics[options.pick() % options.topics.length] ?? 'chaos.a';
      inFlight = items.length;
      for (let attempt = 0; attempt < 20 && !stopped; attempt++) {
        const urls = options.urls();
        const url = urls[options.pick() % urls.length];
        try {
          const res = await fetch(`${url}/v1/topics/${topic}/messages`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${options.token}` },
            body: JSON.stringify(items),
            signal: AbortSignal.timeout(10_000),
          });
          if (res.status === 202) {
            const body = (await res.json()) as { messages: { id: string; cursor: string }[] };
            for (const m of body.messages) {
              options.record({ id: m.id, topic, cursor: m.cursor, via: options.name, at: Date.now() });
            }
            break;
          }
          await res.body?.cancel();
        } catch {
          // down, paused or cut off: retry the same keys elsewhere or later
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      inFlight = 0;
      await new Promise((r) => setTimeout(r, (1000 * items.length) / options.rate));
    }
  };
  const running = loop();
  return {
    name: options.name,
    unacked: () => inFlight,
    async stop() {
      stopped = true;
      await running;
    },
  };
}
