// The load generator of the mesh and edge scenarios, a process of its own: one publisher socket
// and a subscriber socket per URL given. It connects, warms up (a few messages every subscriber
// must get), prints "ready", and on a line "go" on stdin runs one measured window:
// - latency: `count` messages at `rate`/s, open loop; records when each subscriber got each one
//   (publish time carried in the payload; one machine, one clock);
// - acks: `count` messages with at most `inflight` unacked; times the last ack and the moment
//   every subscriber holds every message.
// Then it prints one JSON line (LoadgenReport) and exits.
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

export interface LoadgenSpec {
  mode: 'latency' | 'acks';
  /** WebSocket URL of the publisher (a topic socket: `/v1/topics/{topic}/ws`). */
  publish: string;
  /** WebSocket URLs of the subscribers (topic sockets). */
  subscribe: string[];
  topic: string;
  count: number;
  /** latency mode: messages per second. */
  rate: number;
  /** acks mode: most unacked publishes at once. */
  inflight: number;
  warmup: number;
  /** How long to wait for stragglers after the last publish. */
  drainMs: number;
}

export interface LoadgenReport {
  sent: number;
  acked: number;
  /** Per subscriber, per seq: ms from publish to receipt (null: never arrived). */
  latencies: (number | null)[][];
  /** Per subscriber: messages received more than once. */
  repeats: number[];
  /** acks mode: ms from the first publish to the last ack / to every subscriber holding everything. */
  ackMs: number;
  deliveredMs: number;
  cpuMs: number;
  wallMs: number;
}

type Frame = { op?: string; ref?: string; data?: { w?: number; seq?: number; t?: number } };

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadgenSpec;
const now = () => performance.timeOrigin + performance.now();
const payload = 'x'.repeat(60); // with the timestamp and sequence: about 100 bytes of data

function open(url: string, onFrame: (frame: Frame) => void): Promise<WebSocket> {
  const ws = new WebSocket(url);
  return new Promise((resolve, reject) => {
    ws.on('message', (raw) => onFrame(JSON.parse(String(raw)) as Frame));
    ws.once('error', reject);
    // Topic sockets subscribe on connect; "subscribed" says the subscription is live.
    const onSubscribed = (raw: WebSocket.RawData) => {
      if ((JSON.parse(String(raw)) as Frame).op !== 'subscribed') return;
      ws.off('message', onSubscribed);
      resolve(ws);
    };
    ws.on('message', onSubscribed);
  });
}

const received = spec.subscribe.map(() => new Map<number, number>());
const warm = spec.subscribe.map(() => new Set<number>());
const repeats = spec.subscribe.map(() => 0);
let wakeup: (() => void) | undefined;
const subscribers = await Promise.all(
  spec.subscribe.map((url, i) =>
    open(url, (frame) => {
      if (frame.op !== 'msg' || !frame.data) return;
      const at = now();
      const { w, seq, t } = frame.data;
      if (typeof seq !== 'number') return;
      if (w === 1) warm[i]?.add(seq);
      else if (received[i]?.has(seq)) (repeats[i] as number)++;
      else received[i]?.set(seq, at - (t ?? at));
      wakeup?.();
    }),
  ),
);
let acked = 0;
let wakeAck: (() => void) | undefined;
const publisher = await open(spec.publish, (frame) => {
  if (frame.op === 'ack' && frame.ref !== undefined) {
    acked += 1; // only the measured window's publishes carry a ref
    wakeAck?.();
  } else if (frame.op === 'error') process.stderr.write(`loadgen: ${JSON.stringify(frame)}\n`);
});

/** Wait until `done()` holds or `ms` passed (woken by every received frame). */
async function until(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!done()) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.min(left, 50));
      wakeup = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  return true;
}

const send = (seq: number, w: 0 | 1, ref?: string) =>
  publisher.send(
    JSON.stringify({ op: 'pub', topic: spec.topic, data: { w, seq, t: now(), payload }, ...(ref ? { ref } : {}) }),
  );

for (let seq = 0; seq < spec.warmup; seq++) send(seq, 1);
if (!(await until(() => warm.every((s) => s.size >= spec.warmup), 30_000)))
  throw new Error(`loadgen: warm-up messages did not reach every subscriber (${warm.map((s) => s.size).join(',')})`);
process.stdout.write('ready\n');
await new Promise<void>((resolve) => {
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line !== 'go') return;
    lines.close();
    resolve();
  });
});

const cpuStart = process.cpuUsage();
const started = performance.now();
const everything = () => received.every((m) => m.size >= spec.count);
let ackMs = Number.NaN;
let deliveredMs = Number.NaN;
if (spec.mode === 'latency') {
  for (let seq = 0; seq < spec.count; seq++) {
    // Open loop: each message has its due time; a late generator does not slow the schedule.
    const wait = started + (seq * 1000) / spec.rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    send(seq, 0);
  }
} else {
  let seq = 0;
  while (seq < spec.count) {
    while (seq < spec.count && seq - acked < spec.inflight) send(seq, 0, String(seq++));
    await new Promise<void>((resolve) => {
      wakeAck = resolve;
    });
  }
  wakeAck = undefined;
  await new Promise<void>((resolve) => {
    const check = () => (acked >= spec.count ? resolve() : setTimeout(check, 1));
    check();
  });
  ackMs = performance.now() - started;
}
if (await until(everything, spec.drainMs)) deliveredMs = performance.now() - started;
await new Promise((r) => setTimeout(r, 300)); // a repeat would arrive by now
const cpu = process.cpuUsage(cpuStart);
const report: LoadgenReport = {
  sent: spec.count,
  acked,
  latencies: received.map((m) =>
    Array.from({ length: spec.count }, (_, seq) => {
      const ms = m.get(seq);
      return ms === undefined ? null : Math.round(ms * 1000) / 1000;
    }),
  ),
  repeats,
  ackMs,
  deliveredMs,
  cpuMs: (cpu.user + cpu.system) / 1000,
  wallMs: performance.now() - started,
};
for (const ws of [publisher, ...subscribers]) ws.terminate();
process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
