// Closed-loop publishers for the publish scenario: WebSocket connections that each keep a fixed
// number of `pub` frames awaiting their `ack`, and HTTP connections that each keep one POST (one
// message, or an array of them) awaiting its 202. They run in the bench process; the server's CPU
// is read from /proc over the measured window only (after a warm-up).
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import WebSocket from 'ws';
import { percentile, processCpuMs } from './stats.ts';

export interface LoadSpec {
  /** `http://host:port` of the server. */
  base: string;
  /** The server process (its CPU is measured). */
  pid: number;
  topic: string;
  transport: 'ws' | 'http';
  connections: number;
  /** WebSocket: publishes awaiting an ack per connection. HTTP: messages per body (1 = single). */
  depth: number;
  warmupSeconds: number;
  seconds: number;
}

export interface LoadResult {
  acks: number;
  acks_per_s: number;
  /** Publish→ack latency (WebSocket: per frame; HTTP: per request). */
  p50_ms: number;
  p99_ms: number;
  /** Server CPU (all threads) per acknowledged message, µs, and its share of one core. */
  cpu_us_per_publish: number;
  /** The server's main thread (its event loop) alone, µs per acknowledged message. */
  main_cpu_us_per_publish: number;
  server_cpu: number;
  /** This process's CPU ÷ wall time over the window (1 = one core: the load generator is the limit). */
  loadgen_cpu: number;
}

/** utime+stime of a process's main thread in ms (/proc/<pid>/task/<pid>/stat; USER_HZ 100). */
async function mainThreadCpuMs(pid: number): Promise<number> {
  const stat = (await readFile(`/proc/${pid}/task/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return ((Number(stat[11]) + Number(stat[12])) * 1000) / 100;
}

// About 100 bytes per frame, as in issue 19's measurement.
const payload = 'x'.repeat(40);
const item = (n: number) => ({ data: { n, at: 1_700_000_000_000 + n, payload } });

/** Called once with 'start' (begin publishing), then once with 'finish' (resolves when drained). */
type Lane = (phase: 'start' | 'finish') => Promise<void>;

interface Window {
  measuring: boolean;
  stopping: boolean;
  acks: number;
  latencies: number[];
}

async function wsLane(spec: LoadSpec, w: Window): Promise<Lane> {
  const ws = new WebSocket(`${spec.base.replace(/^http/, 'ws')}/v1/ws`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const sentAt = new Map<string, number>();
  let seq = 0;
  let failure: Error | undefined;
  const send = () => {
    const ref = String(++seq);
    sentAt.set(ref, performance.now());
    ws.send(JSON.stringify({ op: 'pub', topic: spec.topic, ...item(seq), ref }));
  };
  let idle: (() => void) | undefined;
  ws.on('message', (raw) => {
    const frame = JSON.parse(String(raw)) as { op: string; ref?: string; code?: string; message?: string };
    if (frame.op !== 'ack') {
      failure ??= new Error(`publish refused: ${frame.code} ${frame.message}`);
      return;
    }
    const at = sentAt.get(frame.ref as string) as number;
    sentAt.delete(frame.ref as string);
    if (w.measuring) {
      w.acks += 1;
      w.latencies.push(performance.now() - at);
    }
    if (!w.stopping && !failure) send();
    else if (sentAt.size === 0) idle?.();
  });
  return async (phase) => {
    if (phase === 'start') {
      for (let i = 0; i < spec.depth; i++) send();
      return;
    }
    if (sentAt.size > 0) {
      await new Promise<void>((resolve, reject) => {
        idle = resolve;
        setTimeout(() => reject(new Error(`${sentAt.size} publishes never acknowledged`)), 30_000).unref();
      });
    }
    ws.close();
    if (failure) throw failure;
  };
}

async function httpLane(spec: LoadSpec, w: Window, agent: Agent): Promise<Lane> {
  const url = new URL(`/v1/topics/${encodeURIComponent(spec.topic)}/messages`, spec.base);
  let seq = 0;
  const post = () =>
    new Promise<void>((resolve, reject) => {
      const items = Array.from({ length: spec.depth }, () => item(++seq));
      const body = JSON.stringify(spec.depth === 1 ? items[0] : items);
      const started = performance.now();
      const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { messages?: unknown[] };
          if (res.statusCode !== 202 || answer.messages?.length !== spec.depth) {
            reject(new Error(`publish refused: ${res.statusCode} ${Buffer.concat(chunks).toString('utf8')}`));
            return;
          }
          if (w.measuring) {
            w.acks += spec.depth;
            w.latencies.push(performance.now() - started);
          }
          resolve();
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  let loop: Promise<void> = Promise.resolve();
  return async (phase) => {
    if (phase === 'finish') return loop;
    loop = (async () => {
      while (!w.stopping) await post();
    })();
    loop.catch(() => {}); // reported when the lane is finished
  };
}

/** Run one closed-loop load against a server and measure the window after the warm-up. */
export async function runPublishLoad(spec: LoadSpec): Promise<LoadResult> {
  const w: Window = { measuring: false, stopping: false, acks: 0, latencies: [] };
  const agent = new Agent({ keepAlive: true, maxSockets: spec.connections });
  try {
    const lanes = await Promise.all(
      Array.from({ length: spec.connections }, () =>
        spec.transport === 'ws' ? wsLane(spec, w) : httpLane(spec, w, agent),
      ),
    );
    for (const lane of lanes) await lane('start');
    await new Promise((r) => setTimeout(r, spec.warmupSeconds * 1000));
    const cpuBefore = await processCpuMs(spec.pid);
    const mainBefore = await mainThreadCpuMs(spec.pid);
    const ownBefore = process.cpuUsage();
    const started = performance.now();
    w.measuring = true;
    await new Promise((r) => setTimeout(r, spec.seconds * 1000));
    w.measuring = false;
    const wallMs = performance.now() - started;
    const cpuMs = (await processCpuMs(spec.pid)) - cpuBefore;
    const mainMs = (await mainThreadCpuMs(spec.pid)) - mainBefore;
    const own = process.cpuUsage(ownBefore);
    w.stopping = true;
    await Promise.all(lanes.map((lane) => lane('finish')));
    const sorted = w.latencies.sort((a, b) => a - b);
    return {
      acks: w.acks,
      acks_per_s: Math.round(w.acks / (wallMs / 1000)),
      p50_ms: percentile(sorted, 50),
      p99_ms: percentile(sorted, 99),
      cpu_us_per_publish: w.acks > 0 ? (cpuMs * 1000) / w.acks : Number.NaN,
      main_cpu_us_per_publish: w.acks > 0 ? (mainMs * 1000) / w.acks : Number.NaN,
      server_cpu: cpuMs / wallMs,
      loadgen_cpu: (own.user + own.system) / 1000 / wallMs,
    };
  } finally {
    w.stopping = true;
    agent.destroy();
  }
}
