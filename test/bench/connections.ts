// Scenario 7, connections: memory per idle subscriber. N sockets connect (to aNode: and subscribe
// to one topic) from load-generator processes spread over 127.0.0.x source addresses and then stay
// idle; the server's RSS growth over N is the cost of one idle subscriber. The same clients
// against the bare-ws baseline.
//
// N sockets need N open files in one server process. When the hard limit (`ulimit -Hn`) is too
// low, the server is started through `prlimit` (allowed with CAP_SYS_RESOURCE, e.g. root in CI);
// when that is refused too, N is capped below the limit and the table says so.
import { fmt, medianOf, numberList, type Scenario } from './scenario.ts';
import { canRaiseFileLimit, hardFileLimit, openFanout, type ServerOptions, type Target, TARGETS } from './fanout.ts';
import { median, processRssBytes } from './stats.ts';

/** Open files a server needs besides its sockets (libraries, store, log, epoll, listening socket). */
const SERVER_FILES = 512;
/** Sockets per load-generator process (each on its own source address: ~28,000 ports each). */
const PER_WORKER = 10_000;

export interface ConnectionsResult {
  target: Target;
  requested: number;
  connections: number;
  rss_before_mb: number;
  rss_after_mb: number;
  rss_per_connection_kb: number;
  connect_per_s: number;
  /** Server CPU time to accept (and subscribe) one connection. */
  server_cpu_us_per_connection: number;
  loadgen_workers: number;
}

export interface ConnectionsPlan {
  requested: number;
  connections: number;
  /** Open files to start the server with (through prlimit), when above the hard limit. */
  nofile?: number;
  /** Why the size was capped, when it was. */
  capped?: string;
}

/** How many connections can be measured here, and how the server must be started for them. */
export function planConnections(requested: number): ConnectionsPlan {
  const need = requested + SERVER_FILES;
  const hard = hardFileLimit();
  if (need <= hard) return { requested, connections: requested };
  if (canRaiseFileLimit(need)) return { requested, connections: requested, nofile: need };
  const connections = Math.max(100, Math.floor((hard - SERVER_FILES) / 1_000) * 1_000);
  return {
    requested,
    connections,
    capped:
      `${requested} connections need ~${need} open files in the server process, but the hard limit here is ${hard} ` +
      `and raising it is not permitted (prlimit needs CAP_SYS_RESOURCE), so ${connections} were measured. ` +
      `Raise \`ulimit -Hn\` first, or run where prlimit is allowed (CAP_SYS_RESOURCE), to measure ${requested}.`,
  };
}

export async function runConnections(
  target: Target,
  plan: ConnectionsPlan,
  options: ServerOptions & { settleMs?: number } = {},
): Promise<ConnectionsResult> {
  // Each load-generator process stays well under its own file limit.
  const perWorker = Math.max(100, Math.min(PER_WORKER, hardFileLimit() - 200));
  const workers = Math.max(1, Math.ceil(plan.connections / perWorker));
  const session = await openFanout(target, {
    subscribers: plan.connections,
    workers,
    nofile: plan.nofile,
    cpuProfDir: options.cpuProfDir,
    readyTimeoutMs: 300_000,
  });
  try {
    // Idle: let timers, GC and lazily grown buffers settle, then take the median of a few samples.
    await new Promise((r) => setTimeout(r, options.settleMs ?? 2_000));
    const samples: number[] = [];
    for (let i = 0; i < 3; i++) {
      samples.push(await processRssBytes(session.pid));
      await new Promise((r) => setTimeout(r, 250));
    }
    const rss = median(samples);
    return {
      target,
      requested: plan.requested,
      connections: plan.connections,
      rss_before_mb: session.rssBefore / 2 ** 20,
      rss_after_mb: rss / 2 ** 20,
      rss_per_connection_kb: (rss - session.rssBefore) / 1024 / plan.connections,
      connect_per_s: Math.round(plan.connections / (session.connectMs / 1000)),
      server_cpu_us_per_connection: (session.connectCpuMs * 1000) / plan.connections,
      loadgen_workers: workers,
    };
  } finally {
    await session.close();
  }
}

export const connectionsScenario: Scenario = {
  name: 'connections',
  summary: 'memory per idle subscriber at 10,000 and 50,000 connections (vs bare ws)',
  flags: {
    connections: { type: 'string' }, // list, e.g. 10000,50000
  },
  async run({ quick, runs, flags, cpuProfDir, log }) {
    const sizes = numberList(flags.connections, quick ? [5_000] : [10_000, 50_000]);
    const rows = [
      '| connections | target | server RSS idle MiB | before MiB | RSS KiB/conn | ratio vs ws | server CPU µs/connect | connects/s |',
      '|---|---|---|---|---|---|---|---|',
    ];
    const notes: string[] = [];
    const data: ConnectionsResult[] = [];
    for (const requested of sizes) {
      const plan = planConnections(requested);
      if (plan.capped) {
        notes.push(`- **Capped: ${plan.capped}**`);
        log(`connections: capped ${requested} to ${plan.connections}: ${plan.capped}`);
      }
      if (plan.nofile) log(`connections: starting the servers with ${plan.nofile} open files (prlimit)`);
      const results: Record<string, ConnectionsResult> = {};
      for (const target of TARGETS) {
        const samples: ConnectionsResult[] = [];
        for (let r = 0; r < runs; r++) {
          log(`connections: ${target}, ${plan.connections} idle subscribers (run ${r + 1}/${runs})`);
          samples.push(
            await runConnections(target, plan, {
              cpuProfDir: target === 'anode' ? cpuProfDir : undefined,
              settleMs: quick ? 1_000 : 2_000,
            }),
          );
        }
        results[target] = medianOf(samples);
        data.push(results[target]);
      }
      const base = results['ws-baseline'] as ConnectionsResult;
      for (const result of [base, results.anode as ConnectionsResult]) {
        const size = plan.capped ? `${result.connections} (of ${requested})` : `${result.connections}`;
        rows.push(
          `| ${size} | ${result.target} | ${fmt(result.rss_after_mb)} | ${fmt(result.rss_before_mb)} | ${fmt(result.rss_per_connection_kb, 2)} | ${fmt(result.rss_per_connection_kb / base.rss_per_connection_kb, 2)}× | ${fmt(result.server_cpu_us_per_connection, 0)} | ${result.connect_per_s} |`,
        );
      }
    }
    notes.push(
      `- RSS per connection = (server RSS once all sockets are open and idle − RSS just after start) ÷ connections; it includes the V8 heap grown for them, not kernel socket buffers. aNode sockets are subscribed to one topic; bare-ws sockets are only open. Load generators: up to ${PER_WORKER} sockets per process, one 127.0.0.x source address each.`,
    );
    return { rows, notes, data };
  },
};
