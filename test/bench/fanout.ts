// Scenario 1, fan-out: one publisher, N subscribers on one server, 100-byte payloads at a steady
// open-loop rate; the same clients and load against aNode's relay and the bare-ws baseline.
//
// The building blocks here (a server process, load-generator processes, a session that measures
// several rates on the same connections) are shared by the saturation and connections scenarios.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { benchRelayArgv } from './relay-argv.ts';
import { fmt, medianOf, numberFlag, numberList, type Scenario } from './scenario.ts';
import { machineCpuTicks, percentile, processCpuMs, processRssBytes } from './stats.ts';

export type Target = 'anode' | 'ws-baseline';
export const TARGETS = ['ws-baseline', 'anode'] as const;

export interface ServerOptions {
  /** Write a `.cpuprofile` of aNode's relay process here (it is stopped with SIGTERM). */
  cpuProfDir?: string;
  /** Start the server with this many file descriptors allowed (through `prlimit`). */
  nofile?: number;
}

export interface FanoutOptions extends ServerOptions {
  subscribers: number;
  rate: number; // messages per second
  seconds: number;
  workers: number; // load-generator processes
}

export interface FanoutResult {
  target: Target;
  subscribers: number;
  rate: number;
  delivered_per_s: number;
  p50_ms: number;
  p99_ms: number;
  p999_ms: number;
  reach: number;
  server_cpu_us_per_delivery: number;
  rss_per_connection_kb: number;
  loadgen_cpu_ms: number;
  /** The busiest load-generator process's CPU time ÷ wall time (1 = one core, saturated). */
  loadgen_max_cpu: number;
  /** The publisher's (this process's) CPU time ÷ wall time. */
  publisher_cpu: number;
  /** Server CPU time ÷ wall time. */
  server_cpu: number;
  /** Busy share of all the machine's cores, and the share taken by processes not ours. */
  machine_busy: number;
  others_cpu: number;
}

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A load-generator process at or above this share of one core is called saturated. */
export const SATURATED = 0.9;

/** The hard limit on open files of this process (what a child may raise its soft limit to). */
export function hardFileLimit(): number {
  const match = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return match?.[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(match?.[1] ?? 1024);
}

/** Whether a child can be started with `nofile` open files (prlimit present, and allowed to). */
export function canRaiseFileLimit(nofile: number): boolean {
  if (nofile <= hardFileLimit()) return true;
  const probe = spawnSync('prlimit', [`--nofile=${nofile}:${nofile}`, 'true']);
  return probe.status === 0;
}

export async function startServer(
  target: Target,
  dataDir: string,
  options: ServerOptions = {},
): Promise<{ child: ChildProcess; url: string; pid: number }> {
  const args =
    target === 'anode' ? benchRelayArgv(dataDir, { cpuProfDir: options.cpuProfDir }) : [here('./baseline-server.ts')];
  // prlimit sets the limit on itself and then execs node, so the pid is the server's.
  const [command, argv] =
    options.nofile !== undefined && options.nofile > hardFileLimit()
      ? ['prlimit', [`--nofile=${options.nofile}:${options.nofile}`, process.execPath, ...args]]
      : [process.execPath, args];
  const child = spawn(command as string, argv as string[], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      const match = /(?:relay|baseline) ready at ((?:http|ws):\/\/[^"\s]+)/.exec(output);
      if (match?.[1]) {
        child.stdout?.off('data', onData);
        child.stdout?.resume(); // keep draining later log lines
        resolve(match[1].replace(/^http/, 'ws'));
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${target} exited ${code}: ${output}`)));
  });
  return { child, url, pid: child.pid as number };
}

/** SIGTERM, and wait for a clean exit (a CPU profile is written then); SIGKILL after 15 s. */
export async function stopServer(
  child: ChildProcess,
  log = (line: string) => process.stderr.write(`bench: ${line}\n`),
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit').catch(() => {});
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    log(`server ${child.pid} did not exit within 15 s of SIGTERM; killing it (no CPU profile)`);
    child.kill('SIGKILL');
  }, 15_000);
  await exited;
  clearTimeout(timer);
}

export interface WorkerReport {
  phase: number;
  received: number;
  latencies: number[];
  cpuMs: number;
  wallMs: number;
  open: number;
}

// Source addresses rotate over 127.0.0.2–251 from a random start, so a run never binds ports of
// an address a previous run left in TIME_WAIT (workers also reset their sockets when stopped).
let nextAddress = Math.floor(Math.random() * 250);

export function startWorker(url: string, count: number, target: Target, topic = 'bench.t') {
  // Each process on its own 127.0.0.x source address: ~28,000 ephemeral ports each.
  const localAddress = `127.0.0.${2 + (nextAddress++ % 250)}`;
  const child = spawn(
    process.execPath,
    [here('./subscriber-worker.ts'), url, String(count), target === 'anode' ? 'anode' : 'raw', topic, localAddress],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  child.stdin?.on('error', () => {}); // a worker that died is reported by `take`
  let buffer = '';
  const lines: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk;
    let newline = buffer.indexOf('\n');
    while (newline >= 0) {
      lines.push(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf('\n');
    }
  });
  /** The first line that matches (removed, so the next call waits for a new one). */
  const take = async (predicate: (line: string) => boolean, timeoutMs = 120_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = lines.findIndex(predicate);
      if (at >= 0) return lines.splice(at, 1)[0] as string;
      if (child.exitCode !== null) throw new Error(`load-generator worker exited ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error('load-generator worker timed out');
      await sleep(10);
    }
  };
  const command = (line: string) => child.stdin?.write(`${line}\n`);
  const report = async () => {
    command('report');
    return JSON.parse(await take((l) => l.startsWith('{'))) as WorkerReport;
  };
  return { child, take, command, report, count };
}

export type Worker = ReturnType<typeof startWorker>;

export interface SessionOptions extends ServerOptions {
  subscribers: number;
  workers: number;
  /** Wait for every socket to open and subscribe (ms). */
  readyTimeoutMs?: number;
}

export interface Measurement {
  rate: number;
  seconds: number;
  published: number;
  received: number;
  expected: number;
  reach: number;
  delivered_per_s: number;
  latencies: number[]; // sorted
  p50_ms: number;
  p99_ms: number;
  p999_ms: number;
  server_cpu_ms: number;
  server_cpu: number;
  loadgen_cpu_ms: number;
  loadgen_max_cpu: number;
  publisher_cpu: number;
  /** Busy share of all the machine's cores during the phase (1 = every core busy). */
  machine_busy: number;
  /** Cores used by processes other than the server, load generator and publisher. */
  others_cpu: number;
  /** Subscriber sockets still open at the end (aNode cuts off consumers too slow to keep up). */
  open: number;
}

/**
 * One server, `subscribers` sockets spread over `workers` load-generator processes, and one
 * publisher; `measure` runs one open-loop phase at a rate and may be called again.
 */
export async function openFanout(target: Target, options: SessionOptions) {
  const dataDir = await mkdtemp(join(tmpdir(), 'anode-bench-'));
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  const workers: Worker[] = [];
  let publisher: WebSocket | undefined;
  const close = async () => {
    for (const w of workers) w.command('stop');
    await Promise.all(
      workers.map(async (w) => {
        if (w.child.exitCode === null) await once(w.child, 'exit').catch(() => {});
      }),
    );
    publisher?.terminate();
    if (server) await stopServer(server.child);
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    server = await startServer(target, dataDir, options);
    const { pid, url } = server;
    const rssBefore = await processRssBytes(pid);
    const cpuBeforeConnect = await processCpuMs(pid);
    const connectStarted = performance.now();
    const perWorker = Math.ceil(options.subscribers / options.workers);
    for (let i = 0; i < options.workers; i++) {
      const count = Math.min(perWorker, options.subscribers - i * perWorker);
      if (count > 0) workers.push(startWorker(url, count, target));
    }
    await Promise.all(workers.map((w) => w.take((l) => l === 'ready', options.readyTimeoutMs ?? 180_000)));
    const connectMs = performance.now() - connectStarted;
    const connectCpuMs = (await processCpuMs(pid)) - cpuBeforeConnect;
    const rssAfter = await processRssBytes(pid);

    const pub = new WebSocket(target === 'anode' ? `${url}/v1/ws` : url, { perMessageDeflate: false });
    publisher = pub;
    pub.on('error', () => {});
    await once(pub, 'open');
    let phase = 0;

    const measure = async (rate: number, seconds: number, tailMs = 1_000): Promise<Measurement> => {
      phase += 1;
      for (const w of workers) w.command(`phase ${phase}`);
      await Promise.all(workers.map((w) => w.take((l) => l === `phase ${phase}`)));
      const payload = 'x'.repeat(55); // with the timestamp, sequence and phase: about 100 bytes of data
      const total = Math.max(1, Math.round(rate * seconds));
      const cpuBefore = await processCpuMs(pid);
      const machineBefore = await machineCpuTicks();
      const publisherCpu = process.cpuUsage();
      const started = performance.now();
      for (let seq = 0; seq < total; seq++) {
        // Open loop: each message has its due time; a late generator does not slow the schedule.
        const due = started + (seq * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        const data = { t: performance.timeOrigin + performance.now(), seq, p: phase, payload };
        pub.send(JSON.stringify(target === 'anode' ? { op: 'pub', topic: 'bench.t', data } : data));
      }
      const publishWall = performance.now() - started;
      const publisherMs = process.cpuUsage(publisherCpu);
      await sleep(tailMs); // let the tail drain
      const wall = performance.now() - started;
      const serverCpuMs = (await processCpuMs(pid)) - cpuBefore;
      const machineAfter = await machineCpuTicks();
      const reports = await Promise.all(workers.map((w) => w.report()));
      const loadgenCpuMs = reports.reduce((n, r) => n + r.cpuMs, 0);
      const machineBusy = (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total || 1);
      const oursCores = (serverCpuMs + loadgenCpuMs + (publisherMs.user + publisherMs.system) / 1000) / wall;
      const received = reports.reduce((n, r) => n + r.received, 0);
      const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
      const expected = total * options.subscribers;
      return {
        rate,
        seconds,
        published: total,
        received,
        expected,
        reach: received / expected,
        delivered_per_s: Math.round(received / (Math.max(publishWall, seconds * 1000) / 1000)),
        latencies,
        p50_ms: percentile(latencies, 50),
        p99_ms: percentile(latencies, 99),
        p999_ms: percentile(latencies, 99.9),
        server_cpu_ms: serverCpuMs,
        server_cpu: serverCpuMs / wall,
        loadgen_cpu_ms: loadgenCpuMs,
        loadgen_max_cpu: Math.max(...reports.map((r) => r.cpuMs / r.wallMs)),
        publisher_cpu: (publisherMs.user + publisherMs.system) / 1000 / publishWall,
        machine_busy: machineBusy,
        others_cpu: Math.max(0, machineBusy * cpus().length - oursCores),
        open: reports.reduce((n, r) => n + r.open, 0),
      };
    };

    return {
      target,
      url,
      pid,
      subscribers: options.subscribers,
      /** Server RSS just after start, and once every subscriber is open (and subscribed). */
      rssBefore,
      rssAfter,
      /** Time from starting the load generators until every socket was ready, and server CPU meanwhile. */
      connectMs,
      connectCpuMs,
      workers,
      measure,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

export type FanoutSession = Awaited<ReturnType<typeof openFanout>>;

/** Load-generator processes for a number of subscribers: about 2,500 sockets each, at most 4. */
export const workersFor = (subscribers: number) => Math.min(4, Math.max(1, Math.ceil(subscribers / 2_500)));

export async function runFanout(target: Target, options: FanoutOptions): Promise<FanoutResult> {
  const session = await openFanout(target, options);
  try {
    const m = await session.measure(options.rate, options.seconds);
    return {
      target,
      subscribers: options.subscribers,
      rate: options.rate,
      delivered_per_s: m.delivered_per_s,
      p50_ms: m.p50_ms,
      p99_ms: m.p99_ms,
      p999_ms: m.p999_ms,
      reach: m.reach,
      server_cpu_us_per_delivery: m.received > 0 ? (m.server_cpu_ms * 1000) / m.received : Number.NaN,
      rss_per_connection_kb: (session.rssAfter - session.rssBefore) / 1024 / options.subscribers,
      loadgen_cpu_ms: m.loadgen_cpu_ms,
      loadgen_max_cpu: m.loadgen_max_cpu,
      publisher_cpu: m.publisher_cpu,
      server_cpu: m.server_cpu,
      machine_busy: m.machine_busy,
      others_cpu: m.others_cpu,
    };
  } finally {
    await session.close();
  }
}

/** A note for each measurement whose load generator (or publisher) was near a full core. */
export function saturationNotes(
  label: string,
  results: readonly { loadgen_max_cpu: number; publisher_cpu: number; machine_busy: number; others_cpu: number }[],
): string[] {
  const notes: string[] = [];
  const worst = Math.max(...results.map((r) => r.loadgen_max_cpu));
  const publisher = Math.max(...results.map((r) => r.publisher_cpu));
  const machine = Math.max(...results.map((r) => r.machine_busy));
  const others = Math.max(...results.map((r) => r.others_cpu));
  if (worst >= SATURATED) {
    notes.push(
      `- ${label}: a load-generator process used ${(worst * 100).toFixed(0)}% of a core: the load generator was saturated, so the server may be faster than shown.`,
    );
  }
  if (publisher >= SATURATED) {
    notes.push(
      `- ${label}: the publisher used ${(publisher * 100).toFixed(0)}% of a core while publishing: it may not have kept the open-loop schedule.`,
    );
  }
  if (machine >= SATURATED) {
    notes.push(
      `- ${label}: the machine's ${cpus().length} cores were ${(machine * 100).toFixed(0)}% busy: server, load generator and publisher compete for them, so this is a limit of the machine as much as of the server.`,
    );
  }
  if (others >= 0.25) {
    notes.push(
      `- ${label}: other processes on the machine used up to ${others.toFixed(2)} cores meanwhile: figures are disturbed.`,
    );
  }
  return notes;
}

export const fanoutScenario: Scenario = {
  name: 'fanout',
  summary: 'one publisher, N subscribers on one relay, 100-byte payloads at a steady rate (vs bare ws)',
  flags: {
    subscribers: { type: 'string' }, // list, e.g. 100,1000,10000
    rate: { type: 'string' },
    seconds: { type: 'string' },
  },
  async run({ quick, runs, flags, cpuProfDir, log }) {
    const sizes = numberList(flags.subscribers, quick ? [100] : [100, 1_000, 10_000]);
    const rows = [
      '| subscribers | target | rate/s | delivered/s | p50 ms | p99 ms | p99.9 ms | reach | server CPU µs/delivery | RSS KiB/conn | load-gen CPU (max proc) | ratio p99 vs ws |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ];
    const notes: string[] = [];
    const data: FanoutResult[] = [];
    for (const subscribers of sizes) {
      const options: FanoutOptions = {
        subscribers,
        // 50,000–100,000 deliveries per second: a steady load, below saturation on 2 cores.
        rate: numberFlag(flags.rate, subscribers >= 10_000 ? 10 : subscribers >= 1_000 ? 100 : 500),
        seconds: numberFlag(flags.seconds, quick ? 3 : 8),
        workers: workersFor(subscribers),
      };
      const results: Record<string, FanoutResult> = {};
      for (const target of TARGETS) {
        const samples: FanoutResult[] = [];
        for (let r = 0; r < runs; r++) {
          log(
            `fan-out: ${target}, ${subscribers} subscribers, ${options.rate}/s for ${options.seconds} s (run ${r + 1}/${runs})`,
          );
          samples.push(
            await runFanout(target, { ...options, cpuProfDir: target === 'anode' ? cpuProfDir : undefined }),
          );
        }
        results[target] = medianOf(samples);
        data.push(results[target]);
        notes.push(...saturationNotes(`${subscribers} subscribers, ${target}`, samples));
      }
      const base = results['ws-baseline'] as FanoutResult;
      for (const result of [base, results.anode as FanoutResult]) {
        rows.push(
          `| ${subscribers} | ${result.target} | ${result.rate} | ${result.delivered_per_s} | ${fmt(result.p50_ms, 2)} | ${fmt(result.p99_ms, 2)} | ${fmt(result.p999_ms, 2)} | ${(result.reach * 100).toFixed(2)}% | ${fmt(result.server_cpu_us_per_delivery, 2)} | ${fmt(result.rss_per_connection_kb)} | ${fmt(result.loadgen_max_cpu * 100, 0)}% | ${fmt(result.p99_ms / base.p99_ms, 2)}× |`,
        );
      }
    }
    notes.push(
      '- Latency is sampled on ~50 sockets per load-generator process, spread evenly over its sockets (so over the fan-out order); delivered/s is over the publishing window.',
    );
    return { rows, notes, data };
  },
};
