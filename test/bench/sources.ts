// Scenario 6, sources: N polled HTTP sources on loopback (1,000 and 10,000). A feed server process
// serves N JSON endpoints whose newest item changes once per interval and carries the time it was
// produced; a relay process pulls them as N `http` sources from its config file, and a subscriber
// process receives them over WebSocket: ingest lag = receive time − production time. Baseline in
// the same run: a bare poller process (same endpoints, interval, concurrency, timeout and
// conditional requests; plain fetch + JSON.parse, nothing else) — the floor any poller pays.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchRelayArgv } from './relay-argv.ts';
import { fmt, medianOf, numberFlag, numberList, type Scenario } from './scenario.ts';
import { expectedItems } from './sources-items.ts';
import { percentile, processCpuMs, processRssBytes } from './stats.ts';

export interface SourcesOptions {
  sources: number;
  intervalMs: number;
  /** Length of the measurement window (items produced in it are the ones measured). */
  seconds: number;
  /** Polls in flight at once (the relay's `source_concurrency`; the poller's limit). */
  concurrency: number;
  /** Write the relay's CPU profile here (SIGTERM ends it so the profile is written). */
  cpuProfDir?: string;
  log?: (line: string) => void;
}

export interface SourcesResult {
  target: 'anode' | 'poller-baseline';
  sources: number;
  interval_ms: number;
  items_expected: number;
  items_received: number;
  reach: number;
  duplicates: number;
  items_per_s: number;
  lag_p50_ms: number;
  lag_p99_ms: number;
  lag_max_ms: number;
  /** Served by the feed → received: the part of the lag that is not waiting for the next poll. */
  pipeline_p50_ms: number;
  pipeline_p99_ms: number;
  /** How late each source's last poll started after it was due (`lag_ms` of `/v1/status`). */
  poll_lag_p50_ms: number;
  poll_lag_p99_ms: number;
  max_consecutive_failures: number;
  failing_sources: number;
  sources_ok: number;
  cpu_pct: number;
  cpu_us_per_item: number;
  rss_mb: number;
  startup_ms: number;
  feed_cpu_pct: number;
  subscriber_cpu_pct: number;
}

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const TOPIC_PREFIX = 'srcbench';

/** A child process whose stdout lines are kept (a bounded tail) and can be awaited. */
function startChild(args: string[], name: string) {
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let buffer = '';
  let lines: string[] = [];
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    if (parts.length === 0) return;
    lines = lines.concat(parts).slice(-200);
    for (const wake of waiters) wake();
  });
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `${name} exited (${signal ?? code})`;
    for (const wake of waiters) wake();
  });
  const waitLine = async <T>(pick: (line: string) => T | undefined, timeoutMs = 120_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const line of lines) {
        const found = pick(line);
        if (found !== undefined) return found;
      }
      if (exited) throw new Error(`${exited}; last output:\n${lines.slice(-10).join('\n')}`);
      if (Date.now() > deadline) throw new Error(`${name}: no expected output within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, 100);
        waiters.add(wake);
      });
    }
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exit = once(child, 'exit');
    child.kill(signal);
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exit.catch(() => {});
    clearTimeout(killer);
  };
  return { child, pid: child.pid as number, waitLine, stop };
}

export interface FeedServer {
  url: string;
  epoch0: number;
  pid: number;
  count: number;
  periodMs: number;
  stop(): Promise<void>;
}

/** The feed server process: `count` endpoints, a new item on each once per `periodMs`. */
export async function startFeedServer(count: number, periodMs: number): Promise<FeedServer> {
  const feed = startChild([here('./sources-feed.ts'), String(count), String(periodMs), '3'], 'feed server');
  const info = await feed.waitLine((line) =>
    line.startsWith('{') ? (JSON.parse(line) as { url: string; epoch0: number }) : undefined,
  );
  return { url: info.url, epoch0: info.epoch0, pid: feed.pid, count, periodMs, stop: () => feed.stop() };
}

const sleepUntil = (at: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));

interface StreamReport {
  received: number;
  duplicates: number;
  lag: { p50: number | null; p99: number | null; max: number | null };
  pipeline: { p50: number | null; p99: number | null };
  pollLag?: { p50: number | null; p99: number | null; max: number | null };
  maxFailures?: number;
  failing?: number;
}

interface SourceStatus {
  state: string;
  lag_ms: number;
  consecutive_failures: number;
}

/** One measurement of `target` against a running feed server. */
export async function runSources(
  target: SourcesResult['target'],
  feed: FeedServer,
  options: SourcesOptions,
): Promise<SourcesResult> {
  const { sources, intervalMs, concurrency } = options;
  if (sources > feed.count) throw new Error(`the feed server serves ${feed.count} feeds, not ${sources}`);
  const dir = await mkdtemp(join(tmpdir(), 'anode-bench-sources-'));
  const children: ReturnType<typeof startChild>[] = [];
  try {
    const began = Date.now();
    let relayUrl = '';
    let subscriber: ReturnType<typeof startChild> | undefined;
    let main: ReturnType<typeof startChild>;
    if (target === 'anode') {
      const config = {
        admin_token: 'bench-admin-token-0123456789',
        source_concurrency: concurrency,
        sources: Array.from({ length: sources }, (_, i) => ({
          name: `f${i}`,
          kind: 'http',
          url: `${feed.url}/f/${i}`,
          interval_ms: intervalMs,
          items_path: '$.items',
          id_path: '$.id',
          ts_path: '$.t',
          topic: `${TOPIC_PREFIX}.f${i}`,
        })),
      };
      await writeFile(join(dir, 'relay.json'), JSON.stringify(config));
      main = startChild(
        benchRelayArgv(join(dir, 'data'), {
          cpuProfDir: options.cpuProfDir,
          extra: ['--config', join(dir, 'relay.json')],
        }),
        'relay',
      );
      children.push(main);
      relayUrl = await main.waitLine((line) => /relay ready at (http:\/\/[^"\s]+)/.exec(line)?.[1]);
      subscriber = startChild(
        [here('./sources-subscriber.ts'), relayUrl.replace(/^http/, 'ws'), `${TOPIC_PREFIX}.>`],
        'subscriber',
      );
      children.push(subscriber);
      await subscriber.waitLine((line) => (line === 'ready' ? true : undefined));
    } else {
      main = startChild(
        [here('./sources-poller.ts'), feed.url, String(sources), String(intervalMs), String(concurrency), '10000'],
        'poller',
      );
      children.push(main);
      await main.waitLine((line) => (line === 'ready' ? true : undefined));
    }
    const startupMs = Date.now() - began;

    // Warm-up: every source has made its first poll (spread over one interval) and drained the
    // backlog it found; then measure the items produced in [from, to).
    const from = Date.now() + Math.round(1.5 * intervalMs) + 1_000;
    const to = from + options.seconds * 1_000;
    await sleepUntil(from);
    const cpu0 = await Promise.all([main.pid, feed.pid, subscriber?.pid].map((pid) => (pid ? processCpuMs(pid) : 0)));
    options.log?.(`sources: ${target}: measuring ${options.seconds} s`);
    await sleepUntil(to);
    const cpu1 = await Promise.all([main.pid, feed.pid, subscriber?.pid].map((pid) => (pid ? processCpuMs(pid) : 0)));
    const windowMs = to - from;
    const rss = await processRssBytes(main.pid);

    let status: SourceStatus[] = [];
    if (target === 'anode') {
      const body = (await (await fetch(`${relayUrl}/v1/status`)).json()) as { sources?: SourceStatus[] };
      status = body.sources ?? [];
    }
    // Items produced just before `to` are polled up to an interval later.
    await sleepUntil(to + intervalMs + 1_500);
    const reporter = subscriber ?? main;
    reporter.child.stdin?.write(`stop ${from} ${to}\n`);
    const report = await reporter.waitLine((line) =>
      line.startsWith('{') ? (JSON.parse(line) as StreamReport) : undefined,
    );

    const expected = expectedItems(sources, feed.epoch0, feed.periodMs, from, to);
    const cpuMs = (cpu1[0] as number) - (cpu0[0] as number);
    let pollLag = report.pollLag;
    let maxFailures = report.maxFailures ?? 0;
    let failing = report.failing ?? 0;
    let ok = sources - failing;
    if (target === 'anode') {
      const lags = status.map((s) => s.lag_ms).sort((a, b) => a - b);
      pollLag = { p50: percentile(lags, 50), p99: percentile(lags, 99), max: lags.at(-1) ?? null };
      maxFailures = Math.max(0, ...status.map((s) => s.consecutive_failures));
      failing = status.filter((s) => s.consecutive_failures > 0).length;
      ok = status.filter((s) => s.state === 'ok').length;
    }
    const num = (n: number | null | undefined) => (typeof n === 'number' ? n : Number.NaN);
    return {
      target,
      sources,
      interval_ms: intervalMs,
      items_expected: expected,
      items_received: report.received,
      reach: expected > 0 ? report.received / expected : Number.NaN,
      duplicates: report.duplicates,
      items_per_s: Math.round(report.received / (windowMs / 1000)),
      lag_p50_ms: num(report.lag.p50),
      lag_p99_ms: num(report.lag.p99),
      lag_max_ms: num(report.lag.max),
      pipeline_p50_ms: num(report.pipeline.p50),
      pipeline_p99_ms: num(report.pipeline.p99),
      poll_lag_p50_ms: num(pollLag?.p50),
      poll_lag_p99_ms: num(pollLag?.p99),
      max_consecutive_failures: maxFailures,
      failing_sources: failing,
      sources_ok: ok,
      cpu_pct: (cpuMs / windowMs) * 100,
      cpu_us_per_item: report.received > 0 ? (cpuMs * 1000) / report.received : Number.NaN,
      rss_mb: rss / 2 ** 20,
      startup_ms: startupMs,
      feed_cpu_pct: (((cpu1[1] as number) - (cpu0[1] as number)) / windowMs) * 100,
      subscriber_cpu_pct: subscriber ? (((cpu1[2] as number) - (cpu0[2] as number)) / windowMs) * 100 : Number.NaN,
    };
  } finally {
    // Subscriber and poller first; the relay last, with SIGTERM so a CPU profile gets written.
    for (const child of children.reverse()) await child.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export const sourcesScenario: Scenario = {
  name: 'sources',
  summary: '1,000 and 10,000 polled HTTP sources on loopback: ingest lag and CPU (vs a bare poller)',
  flags: {
    sources: { type: 'string' }, // list, e.g. 1000,10000
    'interval-ms': { type: 'string' }, // poll interval (and item period) of every source
    seconds: { type: 'string' },
    concurrency: { type: 'string' }, // source_concurrency (default 256, the relay's)
  },
  async run({ quick, runs, flags, cpuProfDir, log }) {
    const sizes = numberList(flags.sources, quick ? [1_000] : [1_000, 10_000]);
    const rows = [
      '| sources | interval ms | target | items/s | reach | ingest lag p50 ms | p99 ms | max ms | served→received p50 ms | p99 ms | poll start lag p99 ms | failing / max failures | CPU % of a core | CPU µs/item | RSS MB | feed server CPU % | ratio lag p99 vs poller | ratio served→received p50 vs poller | ratio CPU/item vs poller |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ];
    const notes: string[] = [];
    const data: SourcesResult[] = [];
    for (const sources of sizes) {
      // Default: at most 2,000 polls/s on this 2-core machine (1,000 @ 1 s, 10,000 @ 5 s).
      const intervalMs = numberFlag(flags['interval-ms'], Math.max(1_000, Math.ceil(sources / 2)));
      const options: SourcesOptions = {
        sources,
        intervalMs,
        seconds: numberFlag(flags.seconds, quick ? 3 : Math.max(5, Math.ceil((3 * intervalMs) / 1000))),
        concurrency: numberFlag(flags.concurrency, 256),
        cpuProfDir,
        log,
      };
      const feed = await startFeedServer(sources, intervalMs);
      const results: Partial<Record<SourcesResult['target'], SourcesResult>> = {};
      try {
        for (const target of ['poller-baseline', 'anode'] as const) {
          const samples: SourcesResult[] = [];
          for (let r = 0; r < runs; r++) {
            log(`sources: ${target}, ${sources} sources every ${intervalMs} ms (run ${r + 1}/${runs})`);
            samples.push(await runSources(target, feed, options));
          }
          const result = medianOf(samples);
          results[target] = result;
          data.push(result);
          const feedSaturated = samples.some((s) => s.feed_cpu_pct > 90);
          if (feedSaturated) {
            notes.push(
              `${sources} sources, ${target}: the feed server SATURATED (${fmt(Math.max(...samples.map((s) => s.feed_cpu_pct)), 0)} % of a core): lag figures include its queueing.`,
            );
          }
          if (samples.some((s) => s.subscriber_cpu_pct > 90)) {
            notes.push(`${sources} sources, ${target}: the subscriber process SATURATED (> 90 % of a core).`);
          }
          if (samples.some((s) => s.reach < 1)) {
            notes.push(
              `${sources} sources, ${target}: not every item produced in the window arrived (reach ${samples.map((s) => (s.reach * 100).toFixed(1)).join(', ')} %): it did not keep up.`,
            );
          }
        }
      } finally {
        await feed.stop();
      }
      const base = results['poller-baseline'] as SourcesResult;
      for (const result of [base, results.anode as SourcesResult]) {
        rows.push(
          `| ${sources} | ${intervalMs} | ${result.target} | ${result.items_per_s} | ${(result.reach * 100).toFixed(2)}% | ${fmt(result.lag_p50_ms, 0)} | ${fmt(result.lag_p99_ms, 0)} | ${fmt(result.lag_max_ms, 0)} | ${fmt(result.pipeline_p50_ms, 1)} | ${fmt(result.pipeline_p99_ms, 1)} | ${fmt(result.poll_lag_p99_ms, 0)} | ${result.failing_sources} / ${result.max_consecutive_failures} | ${fmt(result.cpu_pct, 0)} | ${fmt(result.cpu_us_per_item, 0)} | ${fmt(result.rss_mb, 0)} | ${fmt(result.feed_cpu_pct, 0)} | ${fmt(result.lag_p99_ms / base.lag_p99_ms, 2)}× | ${fmt(result.pipeline_p50_ms / base.pipeline_p50_ms, 2)}× | ${fmt(result.cpu_us_per_item / base.cpu_us_per_item, 2)}× |`,
        );
      }
      const anode = results.anode as SourcesResult;
      notes.push(
        `${sources} sources: relay start with ${sources} sources from its config file until the subscriber was subscribed ${fmt(anode.startup_ms / 1000, 1)} s; subscriber process ${fmt(anode.subscriber_cpu_pct, 0)} % of a core; feed server ${fmt(Math.max(base.feed_cpu_pct, anode.feed_cpu_pct), 0)} % of a core at most (${Math.max(base.feed_cpu_pct, anode.feed_cpu_pct) > 90 ? 'saturated' : 'not saturated'}).`,
      );
    }
    notes.push(
      'Each feed produces one item per interval (phases spread over the interval), so ingest lag is dominated by the wait for the next poll (uniform in 0…interval for any poller); served→received is the rest (from the feed answering): for aNode the end of the fetch, JSON parsing, extraction, dedup, store (embedded, store_fsync false) and WebSocket delivery to the subscriber process, for the poller just fetch and JSON.parse. CPU is the relay’s (or the poller’s) over the measurement window, including the polls that found nothing new. Poll start lag is how late each source’s last poll started after it was due (`lag_ms` in /v1/status). Measurement window: items produced after 1.5 intervals + 1 s of warm-up.',
    );
    return { rows, notes, data };
  },
};
