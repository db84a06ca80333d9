// The edge's client connections (docs/edge-sockets.md), measured inside the edge scenario: one
// `/v1/ws` socket at the edge subscribed to 100 topics, and a pattern subscriber at the edge,
// receiving messages published at the edge and on the relay. Latency is publish-to-receive in
// this process (one clock), open loop at a fixed rate; reach counts what arrived within the drain.
import WebSocket from 'ws';
import { summarize } from './mesh-edge-common.ts';

export interface EdgeSocketsResult {
  case: string;
  subscribe_ms: number;
  p50_ms: number;
  p99_ms: number;
  reach: number;
  repeats: number;
}

interface Urls {
  edge: string;
  relay: string;
}

async function open(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return ws;
}

type Frame = { op: string; ref?: string; data?: { seq: number }; topic?: string; code?: string };

/** Subscribe `topics` on one socket; resolves when every `subscribed` came back (ms taken). */
async function subscribeAll(ws: WebSocket, topics: string[]): Promise<number> {
  const started = performance.now();
  const waiting = new Set(topics);
  const done = new Promise<void>((resolve, reject) => {
    const onFrame = (raw: WebSocket.RawData) => {
      const frame = JSON.parse(String(raw)) as Frame;
      if (frame.op === 'err') reject(new Error(`sub refused: ${String(raw)}`));
      if (frame.op === 'subscribed' && frame.ref !== undefined && waiting.delete(frame.ref) && waiting.size === 0) {
        ws.off('message', onFrame);
        resolve();
      }
    };
    ws.on('message', onFrame);
  });
  for (const topic of topics) ws.send(JSON.stringify({ op: 'sub', topic, ref: topic }));
  await done;
  return performance.now() - started;
}

/**
 * One message per topic first, until the subscriber has them all: each topic's Durable Object
 * and relay link are then up, so the measurement is of the steady state, not of cold starts.
 */
async function warmUp(subscriber: WebSocket, publisher: WebSocket, topics: string[]): Promise<void> {
  const waiting = new Set(topics);
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`warm-up: ${waiting.size} topics never delivered`)), 60_000);
    const onFrame = (raw: WebSocket.RawData) => {
      const frame = JSON.parse(String(raw)) as Frame;
      if (frame.op === 'msg' && frame.topic !== undefined && waiting.delete(frame.topic) && waiting.size === 0) {
        clearTimeout(timer);
        subscriber.off('message', onFrame);
        resolve();
      }
    };
    subscriber.on('message', onFrame);
  });
  for (const topic of topics) publisher.send(JSON.stringify({ op: 'pub', topic, data: { warm: true } }));
  await done;
}

/** Publish `count` messages round-robin over `topics` at `rate`/s and time their arrival. */
async function measure(
  subscriber: WebSocket,
  publisher: (i: number) => { ws: WebSocket; topic: string },
  count: number,
  rate: number,
  drainMs: number,
): Promise<{ latencies: (number | null)[]; repeats: number }> {
  const sentAt: number[] = [];
  const latencies: (number | null)[] = Array.from({ length: count }, () => null);
  let repeats = 0;
  let arrived = 0;
  let allIn: () => void = () => {};
  const finished = new Promise<void>((resolve) => (allIn = resolve));
  subscriber.on('message', (raw) => {
    const frame = JSON.parse(String(raw)) as Frame;
    const seq = frame.op === 'msg' ? frame.data?.seq : undefined; // warm-up messages have none
    if (seq === undefined) return;
    if (latencies[seq] !== null) {
      repeats += 1;
      return;
    }
    latencies[seq] = performance.now() - (sentAt[seq] ?? 0);
    if (++arrived === count) allIn();
  });
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const wait = started + (i * 1000) / rate - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const { ws, topic } = publisher(i);
    sentAt[i] = performance.now();
    ws.send(JSON.stringify({ op: 'pub', topic, data: { seq: i } }));
  }
  await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, drainMs))]);
  subscriber.removeAllListeners('message');
  return { latencies, repeats };
}

export async function measureEdgeSockets(
  urls: Urls,
  options: { messages: number; rate: number; run: number; log: (line: string) => void },
): Promise<EdgeSocketsResult[]> {
  const results: EdgeSocketsResult[] = [];
  const sockets: WebSocket[] = [];
  const socket = async (url: string) => {
    const ws = await open(url);
    sockets.push(ws);
    return ws;
  };
  try {
    // One socket, 100 topics, published at the edge round-robin.
    options.log(`edge: one socket at the edge subscribed to 100 topics, ${options.messages} messages`);
    const topics = Array.from({ length: 100 }, (_, i) => `bench.many.r${options.run}.t${i}`);
    const many = await socket(`${urls.edge}/v1/ws`);
    const subscribeMs = await subscribeAll(many, topics);
    const publisher = await socket(`${urls.edge}/v1/ws`);
    await warmUp(many, publisher, topics);
    const fanIn = await measure(
      many,
      (i) => ({ ws: publisher, topic: topics[i % topics.length] as string }),
      options.messages,
      options.rate,
      10_000,
    );
    results.push({ case: '100 topics, one socket (edge→edge)', subscribe_ms: subscribeMs, ...stats(fanIn) });

    // A pattern subscriber at the edge, fed at the edge and on the relay.
    for (const origin of ['edge', 'relay'] as const) {
      options.log(`edge: a pattern subscriber at the edge, published on the ${origin}`);
      const root = `bench.pattern.r${options.run}.${origin}`;
      const watcher = await socket(`${urls.edge}/v1/ws`);
      const patternMs = await subscribeAll(watcher, [`${root}.*`]);
      const pub = await socket(`${urls[origin]}/v1/ws`);
      await warmUp(
        watcher,
        pub,
        Array.from({ length: 10 }, (_, i) => `${root}.t${i}`),
      );
      const fed = await measure(
        watcher,
        (i) => ({ ws: pub, topic: `${root}.t${i % 10}` }),
        options.messages,
        options.rate,
        10_000,
      );
      results.push({ case: `a pattern over 10 topics (${origin}→edge)`, subscribe_ms: patternMs, ...stats(fed) });
    }
  } finally {
    for (const ws of sockets) ws.close();
  }
  return results;
}

function stats(measured: { latencies: (number | null)[]; repeats: number }) {
  const summary = summarize(measured.latencies);
  return { p50_ms: summary.p50, p99_ms: summary.p99, reach: summary.reach, repeats: measured.repeats };
}
