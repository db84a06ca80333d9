// What the mesh and edge scenarios share: relay processes (with --cpu-prof when asked), the
// load-generator process, Prometheus counters, /proc CPU of a process and its children, and
// latency summaries.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadgenReport, LoadgenSpec } from './mesh-edge-loadgen.ts';
import { benchRelayArgv } from './relay-argv.ts';
import { percentile, processCpuMs } from './stats.ts';

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const LOADGEN = here('./mesh-edge-loadgen.ts');

export interface BenchRelay {
  url: string;
  wsUrl: string;
  pid: number;
  child: ChildProcess;
  /** Its data folder (removed by stop). */
  dataDir: string;
  stop(): Promise<void>;
}

/**
 * A relay process on a free port and a fresh data folder; with `cpuProfDir`, node writes a CPU
 * profile there when it stops (SIGTERM).
 */
export async function startBenchRelay(
  args: string[],
  options: { env?: Record<string, string>; cpuProfDir?: string } = {},
): Promise<BenchRelay> {
  const dataDir = await mkdtemp(join(tmpdir(), 'anode-bench-'));
  const child = spawn(process.execPath, benchRelayArgv(dataDir, { cpuProfDir: options.cpuProfDir, extra: args }), {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start in 60 s:\n${output.slice(-2000)}`)), 60_000);
    // Keep reading both pipes for the whole life of the process (a full pipe would stall it).
    const onData = (chunk: Buffer) => {
      if (output.length < 100_000) output += chunk;
      const match = /relay ready at (http:\/\/[^"\s]+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`relay exited (${code}) before ready:\n${output.slice(-2000)}`));
    });
  });
  return {
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    pid: child.pid as number,
    child,
    dataDir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The value of a Prometheus counter (summed over its label sets) on a relay's /metrics. */
export async function counter(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** A load-generator process: connected and warmed up once `ready` resolves; `go` runs the window. */
export async function startLoadgen(spec: LoadgenSpec): Promise<{ pid: number; go(): Promise<LoadgenReport> }> {
  const child = spawn(process.execPath, [LOADGEN, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk));
  const exited = once(child, 'exit');
  const line = (predicate: (l: string) => boolean, timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = stdout.split('\n').slice(0, -1).find(predicate); // whole lines only
        if (found === undefined) return false;
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        resolve(found);
        return true;
      };
      const onData = (chunk: Buffer) => {
        stdout += chunk;
        check();
      };
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`load generator timed out after ${timeoutMs} ms: ${stderr.slice(-2000)}`));
      }, timeoutMs);
      child.stdout?.on('data', onData);
      void exited.then(([code]) => {
        // Let the last chunk of stdout be read first.
        setImmediate(() => {
          if (check()) return;
          clearTimeout(timer);
          reject(new Error(`load generator exited (${code}): ${stderr.slice(-2000)}`));
        });
      });
      check();
    });
  await line((l) => l === 'ready', 60_000);
  return {
    pid: child.pid as number,
    async go() {
      child.stdin?.write('go\n');
      const budget = spec.mode === 'latency' ? (spec.count / spec.rate) * 1000 : 120_000;
      const report = JSON.parse(await line((l) => l.startsWith('{'), budget + spec.drainMs + 30_000)) as LoadgenReport;
      await exited;
      return report;
    },
  };
}

/** CPU ms of a process and all its descendants (workerd under miniflare, for instance). */
export async function treeCpuMs(pid: number): Promise<number> {
  let total = 0;
  for (const p of [pid, ...(await descendants(pid))]) total += await processCpuMs(p).catch(() => 0);
  return total;
}

/** Descendant processes of `pid` whose command name contains `name` (workerd under miniflare). */
export async function descendantsNamed(pid: number, name: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await descendants(pid)) {
    if ((await readFile(`/proc/${p}/comm`, 'utf8').catch(() => '')).includes(name)) out.push(p);
  }
  return out;
}

async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.split(') ')[1]?.split(' ')[1]);
    if (!Number.isFinite(ppid)) continue;
    parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of parents.get(queue.shift() as number) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

/** p50/p99 of the delivered latencies and the share delivered. */
export function summarize(latencies: (number | null)[]): { p50: number; p99: number; reach: number } {
  const got = latencies.filter((l): l is number => l !== null).sort((a, b) => a - b);
  return {
    p50: percentile(got, 50),
    p99: percentile(got, 99),
    reach: latencies.length > 0 ? got.length / latencies.length : 0,
  };
}

/** Per message, when the last of the subscribers got it (null if any never did). */
export function lastArrival(perSubscriber: (number | null)[][]): (number | null)[] {
  const count = perSubscriber[0]?.length ?? 0;
  return Array.from({ length: count }, (_, seq) => {
    let worst = 0;
    for (const list of perSubscriber) {
      const l = list[seq];
      if (l === null || l === undefined) return null;
      worst = Math.max(worst, l);
    }
    return worst;
  });
}

/** The load generator's CPU as a share of one core over its window. */
export const loadgenShare = (report: LoadgenReport) => report.cpuMs / report.wallMs;

/** Above this share of one core the load generator may have been the bottleneck. */
export const SATURATED = 0.8;
