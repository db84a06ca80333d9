// Scenario 8, publish: durable acks per second. Closed-loop publishers (WebSocket: 1 and 100
// connections, each with a fixed number of publishes awaiting their ack; HTTP: single-message and
// batched bodies) against the relay on its embedded store, with `store_fsync` off and on, beside
// the floor in the same run: a minimal Node server that parses each publish, group-commits it to
// SQLite with the same file settings and answers (test/bench/publish-floor.ts).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopServer } from './fanout.ts';
import { type LoadResult, runPublishLoad } from './publish-clients.ts';
import { benchRelayArgv } from './relay-argv.ts';
import { fmt, medianOf, numberFlag, numberList, type Scenario } from './scenario.ts';

export type PublishTarget = 'floor' | 'anode';

export interface PublishCase {
  /** `ws-1`, `ws-100`, `http-single`, `http-batched`. */
  name: string;
  transport: 'ws' | 'http';
  connections: number;
  /** WebSocket: publishes in flight per connection; HTTP: messages per body. */
  depth: number;
}

export interface PublishResult extends LoadResult {
  target: PublishTarget;
  fsync: boolean;
  case: string;
}

export interface PublishOptions {
  fsync: boolean[];
  cases: PublishCase[];
  seconds: number;
  warmupSeconds: number;
  runs: number;
  cpuProfDir?: string;
  log: (line: string) => void;
}

const FLOOR = fileURLToPath(new URL('./publish-floor.ts', import.meta.url));

async function startTarget(target: PublishTarget, dir: string, fsync: boolean, cpuProfDir?: string) {
  const argv =
    target === 'floor'
      ? [FLOOR, join(dir, 'floor'), String(fsync)]
      : // No count limit: the floor keeps every message, and the retention scenario measures what
        // keeping a busy topic at its limit costs.
        benchRelayArgv(join(dir, 'anode'), {
          cpuProfDir,
          extra: ['--store-fsync', String(fsync), '--retention-max-messages', '0'],
        });
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  const base = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      const match = /(?:relay|baseline) ready at (http:\/\/[^"\s]+)/.exec(output);
      if (match?.[1]) {
        child.stdout?.off('data', onData);
        child.stdout?.resume(); // keep draining later log lines
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${target} exited ${code}: ${output}`)));
  });
  return { child, base, pid: child.pid as number };
}

export function publishCases(publishers: number[], inflight: number, httpConnections: number, batch: number) {
  return [
    ...publishers.map((n): PublishCase => ({ name: `ws-${n}`, transport: 'ws', connections: n, depth: inflight })),
    { name: 'http-single', transport: 'http', connections: httpConnections, depth: 1 },
    { name: 'http-batched', transport: 'http', connections: Math.max(1, httpConnections / 8), depth: batch },
  ] satisfies PublishCase[];
}

/** Every case against the floor and the relay, runs interleaved; medians per target and case. */
export async function runPublish(options: PublishOptions): Promise<PublishResult[]> {
  const results: PublishResult[] = [];
  for (const fsync of options.fsync) {
    const dir = await mkdtemp(join(tmpdir(), 'anode-bench-publish-'));
    const servers = {
      floor: await startTarget('floor', dir, fsync),
      anode: await startTarget('anode', dir, fsync, options.cpuProfDir),
    };
    try {
      for (const c of options.cases) {
        const samples: Record<PublishTarget, LoadResult[]> = { floor: [], anode: [] };
        for (let r = 0; r < options.runs; r++) {
          for (const target of ['floor', 'anode'] as const) {
            const server = servers[target];
            const result = await runPublishLoad({
              base: server.base,
              pid: server.pid,
              // A topic per measurement: retention never trims inside one.
              topic: `bench.${c.name}.${r}`,
              transport: c.transport,
              connections: c.connections,
              depth: c.depth,
              warmupSeconds: options.warmupSeconds,
              seconds: options.seconds,
            });
            options.log(
              `publish: fsync ${fsync}, ${c.name}, ${target} (run ${r + 1}/${options.runs}): ${result.acks_per_s} acks/s, p99 ${fmt(result.p99_ms, 2)} ms, ${fmt(result.cpu_us_per_publish, 1)} µs CPU/publish (${fmt(result.main_cpu_us_per_publish, 1)} main thread)`,
            );
            samples[target].push(result);
          }
        }
        for (const target of ['floor', 'anode'] as const) {
          results.push({ ...medianOf(samples[target]), target, fsync, case: c.name });
        }
      }
    } finally {
      await stopServer(servers.floor.child);
      await stopServer(servers.anode.child);
      await rm(dir, { recursive: true, force: true });
    }
  }
  return results;
}

export const publishScenario: Scenario = {
  name: 'publish',
  summary:
    'durable acks/s, ack latency and relay CPU per publish (WS 1/100 connections, HTTP single/batched) vs a floor',
  flags: {
    publishers: { type: 'string' }, // WebSocket connections, a list; default 1,100
    inflight: { type: 'string' }, // per WebSocket connection; default 32
    'http-connections': { type: 'string' }, // single bodies; batched bodies use an eighth; default 32
    'http-batch': { type: 'string' }, // messages per batched body; default 100
    fsync: { type: 'string' }, // false,true
    cases: { type: 'string' }, // a subset of the case names, e.g. ws-1,http-batched
    seconds: { type: 'string' },
  },
  async run({ quick, runs, flags, cpuProfDir, log }) {
    const fsync = typeof flags.fsync === 'string' ? flags.fsync.split(',').map((v) => v === 'true') : [false, true];
    let cases = publishCases(
      numberList(flags.publishers, [1, 100]),
      numberFlag(flags.inflight, 32),
      numberFlag(flags['http-connections'], 32),
      numberFlag(flags['http-batch'], 100),
    );
    if (typeof flags.cases === 'string') {
      const wanted = flags.cases.split(',');
      const unknown = wanted.filter((name) => !cases.some((c) => c.name === name));
      if (unknown.length > 0) throw new Error(`unknown publish case ${unknown.join(', ')}`);
      cases = cases.filter((c) => wanted.includes(c.name));
    }
    const seconds = numberFlag(flags.seconds, quick ? 1 : 3);
    const data = await runPublish({ fsync, cases, seconds, warmupSeconds: quick ? 0.3 : 1, runs, cpuProfDir, log });
    const rows = [
      '| fsync | case | in flight | floor acks/s | anode acks/s | ratio | anode p50 ms | anode p99 ms | floor p99 ms | anode CPU µs/publish (main thread) | floor CPU µs/publish | anode CPU |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ];
    for (const f of fsync) {
      for (const c of cases) {
        const at = (target: PublishTarget) =>
          data.find((r) => r.fsync === f && r.case === c.name && r.target === target) as PublishResult;
        const [floor, anode] = [at('floor'), at('anode')];
        rows.push(
          `| ${f ? 'on' : 'off'} | ${c.name} | ${c.connections} × ${c.depth}${c.transport === 'http' ? ' msg/body' : ''} | ${floor.acks_per_s} | ${anode.acks_per_s} | ${fmt(anode.acks_per_s / floor.acks_per_s, 2)}× | ${fmt(anode.p50_ms, 2)} | ${fmt(anode.p99_ms, 2)} | ${fmt(floor.p99_ms, 2)} | ${fmt(anode.cpu_us_per_publish, 1)} (${fmt(anode.main_cpu_us_per_publish, 1)}) | ${fmt(floor.cpu_us_per_publish, 1)} | ${fmt(anode.server_cpu * 100, 0)}% |`,
        );
      }
    }
    const notesTargets: string[] = [];
    const busy = data.filter((r) => r.loadgen_cpu >= 0.9);
    const find = (f: boolean, name: string, target: PublishTarget) =>
      data.find((r) => r.fsync === f && r.case === name && r.target === target);
    for (const f of fsync) {
      const verdicts: string[] = [];
      const [one, oneFloor, many, batched] = [
        find(f, 'ws-1', 'anode'),
        find(f, 'ws-1', 'floor'),
        find(f, `ws-${Math.max(...cases.filter((c) => c.transport === 'ws').map((c) => c.connections))}`, 'anode'),
        find(f, 'http-batched', 'anode'),
      ];
      const mark = (ok: boolean) => (ok ? 'met' : 'NOT met');
      if (one && oneFloor) {
        const ratio = one.acks_per_s / oneFloor.acks_per_s;
        verdicts.push(
          f
            ? `ws-1 ≥ 0.8× floor: ${fmt(ratio, 2)}× (${mark(ratio >= 0.8)})`
            : `ws-1 ≥ 0.7× floor: ${fmt(ratio, 2)}× (${mark(ratio >= 0.7)}); ≥ 25,000 acks/s: ${one.acks_per_s} (${mark(one.acks_per_s >= 25_000)})`,
        );
      }
      if (one && many && many !== one) {
        verdicts.push(
          `${many.case} ≥ ws-1: ${many.acks_per_s} vs ${one.acks_per_s} (${mark(many.acks_per_s >= one.acks_per_s)})`,
        );
      }
      if (batched) {
        verdicts.push(`http-batched ≥ 50,000 msg/s: ${batched.acks_per_s} (${mark(batched.acks_per_s >= 50_000)})`);
      }
      if (verdicts.length > 0)
        notesTargets.push(`- Targets (issue 19), fsync ${f ? 'on' : 'off'}: ${verdicts.join('; ')}.`);
    }
    const notes = [
      ...notesTargets,
      `- Closed loop: each WebSocket connection keeps its publishes in flight, each HTTP connection one request; ${seconds} s measured after a warm-up, median of ${runs}. acks/s counts acknowledged messages; HTTP latency is per request. CPU is the server process's (all threads; in brackets the main thread alone) over the window ÷ messages acknowledged. The floor runs on one thread; the relay commits on a writer thread.`,
      ...busy.map(
        (r) =>
          `- fsync ${r.fsync ? 'on' : 'off'}, ${r.case}, ${r.target}: the load generator (this process) used ${fmt(r.loadgen_cpu * 100, 0)}% of a core: it may be the limit.`,
      ),
    ];
    return { rows, notes, data };
  },
};
