// `npm run bench [-- --quick] [--runs N] [--only fanout|storage]`: runs the landed scenarios
// beside their baselines, prints a Markdown table and writes JSON to bench-results/.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { type FanoutResult, runFanout } from './fanout.ts';
import { median } from './stats.ts';
import { runStorage, type StorageResult } from './storage.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    only: { type: 'string' },
    subscribers: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string' },
  },
});
const quick = values.quick ?? false;
const runs = Number(values.runs ?? (quick ? 1 : 3));
const machine = `${cpus().length} cores (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const log = (line: string) => process.stderr.write(`${line}\n`);

/** Median of each numeric field over several runs. */
function medianOf<T extends object>(results: T[]): T {
  const first = results[0] as Record<string, unknown>;
  const out: Record<string, unknown> = { ...first };
  for (const [key, value] of Object.entries(first)) {
    if (typeof value === 'number') out[key] = median(results.map((r) => (r as Record<string, number>)[key] as number));
  }
  return out as T;
}

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '–');

async function fanout(): Promise<string[]> {
  const sizes = values.subscribers ? [Number(values.subscribers)] : quick ? [100] : [100, 1_000, 10_000];
  const rows = [
    '| subscribers | target | delivered/s | p50 ms | p99 ms | p99.9 ms | reach | server CPU µs/delivery | RSS KiB/conn | ratio p99 vs ws |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const json: FanoutResult[] = [];
  for (const subscribers of sizes) {
    const options = {
      subscribers,
      rate: Number(values.rate ?? (subscribers >= 10_000 ? 20 : subscribers >= 1_000 ? 100 : 500)),
      seconds: Number(values.seconds ?? (quick ? 3 : 10)),
      workers: Math.min(4, Math.max(1, Math.ceil(subscribers / 2_500))),
    };
    const results: Record<string, FanoutResult> = {};
    for (const target of ['ws-baseline', 'anode'] as const) {
      const samples: FanoutResult[] = [];
      for (let r = 0; r < runs; r++) {
        log(
          `fan-out: ${target}, ${subscribers} subscribers, ${options.rate}/s for ${options.seconds} s (run ${r + 1}/${runs})`,
        );
        samples.push(await runFanout(target, options));
      }
      results[target] = medianOf(samples);
      json.push(results[target]);
    }
    const base = results['ws-baseline'] as FanoutResult;
    for (const result of [base, results.anode as FanoutResult]) {
      rows.push(
        `| ${subscribers} | ${result.target} | ${result.delivered_per_s} | ${fmt(result.p50_ms, 2)} | ${fmt(result.p99_ms, 2)} | ${fmt(result.p999_ms, 2)} | ${(result.reach * 100).toFixed(2)}% | ${fmt(result.server_cpu_us_per_delivery, 2)} | ${fmt(result.rss_per_connection_kb)} | ${fmt(result.p99_ms / base.p99_ms, 2)}× |`,
      );
    }
  }
  await save('fanout', json);
  return rows;
}

async function storage(): Promise<string[]> {
  const rows = [
    '| batch | target | appends/s | history read p50 ms | p99 ms | ratio appends vs raw SQLite |',
    '|---|---|---|---|---|---|',
  ];
  const json: StorageResult[] = [];
  for (const batch of [1, 10, 100]) {
    const messages = quick ? Math.min(2_000, batch * 200) : batch * 1_000;
    log(`storage: batch ${batch}, ${messages} messages`);
    const samples: StorageResult[][] = [];
    for (let r = 0; r < runs; r++) samples.push(await runStorage(batch, messages));
    const anode = medianOf(samples.map((s) => s[0] as StorageResult));
    const raw = medianOf(samples.map((s) => s[1] as StorageResult));
    json.push(anode, raw);
    for (const result of [raw, anode]) {
      rows.push(
        `| ${batch} | ${result.target} | ${result.appends_per_s} | ${fmt(result.read_p50_ms, 3)} | ${fmt(result.read_p99_ms, 3)} | ${fmt(result.appends_per_s / raw.appends_per_s, 2)}× |`,
      );
    }
  }
  await save('storage', json);
  return rows;
}

async function save(name: string, data: unknown): Promise<void> {
  await mkdir('bench-results', { recursive: true });
  await writeFile(
    `bench-results/${name}.json`,
    `${JSON.stringify({ machine, date: new Date().toISOString(), quick, runs, data }, null, 2)}\n`,
  );
}

const scenarios: Record<string, () => Promise<string[]>> = { fanout, storage };
const out = [
  `# aNode benchmarks (${new Date().toISOString().slice(0, 10)}, ${machine}${quick ? ', --quick' : ''}, median of ${runs})`,
];
for (const [name, run] of Object.entries(scenarios)) {
  if (values.only && values.only !== name) continue;
  out.push('', `## ${name}`, '', ...(await run()));
}
process.stdout.write(`${out.join('\n')}\n`);
