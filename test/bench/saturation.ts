// Scenario 2, saturation: one publisher and a fixed number of subscribers on one server; raise the
// open-loop publish rate (doubling, then bisecting) until p99 publish→receive latency exceeds
// 50 ms or reach drops below 99.99%, and report the highest rate that held. The same search runs
// against aNode's relay and the bare-ws baseline.
import { fmt, medianOf, numberFlag, numberList, type Scenario } from './scenario.ts';
import {
  type FanoutSession,
  type Measurement,
  openFanout,
  saturationNotes,
  type ServerOptions,
  type Target,
  TARGETS,
  workersFor,
} from './fanout.ts';

export const P99_LIMIT_MS = 50;
export const REACH_LIMIT = 0.9999;

export interface SaturationOptions extends ServerOptions {
  subscribers: number;
  /** The first rate tried (messages per second). */
  startRate: number;
  /** Length of each step (publishing; a 0.5 s tail follows). */
  seconds: number;
  /** Stop refining once the first failing rate is within this factor of the last rate that held. */
  precision: number;
  /** At most this many steps (the search stops there and says so). */
  maxSteps: number;
  workers?: number;
  log?: (line: string) => void;
}

/** What one step at a fixed rate measured (the result repeats them for the highest rate held). */
interface StepFigures {
  delivered_per_s: number;
  p50_ms: number;
  p99_ms: number;
  reach: number;
  server_cpu: number;
  loadgen_max_cpu: number;
  publisher_cpu: number;
  machine_busy: number;
  others_cpu: number;
}

export interface SaturationStep extends StepFigures {
  rate: number;
  held: boolean;
  why: string; // why it failed, or ''
}

export interface SaturationResult extends StepFigures {
  target: Target;
  subscribers: number;
  /** The highest rate that held (0 when even the lowest rate tried failed). */
  max_rate: number;
  /** The lowest rate that failed (Infinity when none did within maxSteps). */
  first_failed_rate: number;
  step_count: number;
  steps: SaturationStep[];
}

const verdict = (m: Measurement): string => {
  const reasons: string[] = [];
  if (!(m.p99_ms <= P99_LIMIT_MS)) reasons.push(`p99 ${fmt(m.p99_ms, 1)} ms`);
  if (!(m.reach >= REACH_LIMIT)) reasons.push(`reach ${(m.reach * 100).toFixed(3)}%`);
  return reasons.join(', ');
};

export async function runSaturation(target: Target, options: SaturationOptions): Promise<SaturationResult> {
  const session = async () => {
    const opened = await openFanout(target, {
      subscribers: options.subscribers,
      workers: options.workers ?? workersFor(options.subscribers),
      cpuProfDir: options.cpuProfDir,
    });
    // Warm up (JIT, buffers) at the first rate for a moment; not measured.
    await opened.measure(options.startRate, 0.5, 200);
    return opened;
  };
  const steps: SaturationStep[] = [];
  let current: FanoutSession | undefined = await session();
  let best: SaturationStep | undefined;
  let failed: number | undefined;
  let rate = options.startRate;
  try {
    while (steps.length < options.maxSteps) {
      if (!current) current = await session();
      const m = await current.measure(rate, options.seconds, 500);
      const why = verdict(m);
      const step: SaturationStep = {
        rate,
        held: why === '',
        why,
        delivered_per_s: m.delivered_per_s,
        p50_ms: m.p50_ms,
        p99_ms: m.p99_ms,
        reach: m.reach,
        server_cpu: m.server_cpu,
        loadgen_max_cpu: m.loadgen_max_cpu,
        publisher_cpu: m.publisher_cpu,
        machine_busy: m.machine_busy,
        others_cpu: m.others_cpu,
      };
      steps.push(step);
      options.log?.(
        `saturation: ${target}, ${options.subscribers} subscribers, ${rate}/s: ${step.held ? 'held' : `failed (${why})`}; p99 ${fmt(m.p99_ms, 1)} ms, server CPU ${fmt(m.server_cpu * 100, 0)}%, load-gen ${fmt(m.loadgen_max_cpu * 100, 0)}%, machine ${fmt(m.machine_busy * 100, 0)}% busy`,
      );
      if (step.held) {
        if (!best || rate > best.rate) best = step;
      } else {
        failed = failed === undefined ? rate : Math.min(failed, rate);
        // A failed step leaves a backlog (and aNode may have cut slow consumers off): start fresh.
        await current.close();
        current = undefined;
      }
      if (failed === undefined) rate *= 2;
      else if (!best) rate = Math.max(1, Math.floor(rate / 2));
      else if (failed / best.rate <= options.precision) break;
      else rate = Math.round((best.rate + failed) / 2);
      if (best && rate <= best.rate) break; // rates this close cannot be told apart
      if (!best && failed !== undefined && rate >= failed) break; // even 1/s failed
    }
  } finally {
    await current?.close();
  }
  const at = best ?? steps[0];
  return {
    target,
    subscribers: options.subscribers,
    max_rate: best?.rate ?? 0,
    first_failed_rate: failed ?? Number.POSITIVE_INFINITY,
    delivered_per_s: best ? best.delivered_per_s : 0,
    p50_ms: at?.p50_ms ?? Number.NaN,
    p99_ms: at?.p99_ms ?? Number.NaN,
    reach: at?.reach ?? Number.NaN,
    server_cpu: at?.server_cpu ?? Number.NaN,
    // Saturation of the load generator matters at the rates tried, not only at the best one.
    loadgen_max_cpu: Math.max(...steps.map((s) => s.loadgen_max_cpu)),
    publisher_cpu: Math.max(...steps.map((s) => s.publisher_cpu)),
    machine_busy: Math.max(...steps.map((s) => s.machine_busy)),
    others_cpu: Math.max(...steps.map((s) => s.others_cpu)),
    step_count: steps.length,
    steps,
  };
}

export const saturationScenario: Scenario = {
  name: 'saturation',
  summary: `raise the publish rate until p99 > ${P99_LIMIT_MS} ms or reach < 99.99%; highest rate that held (vs bare ws)`,
  flags: {
    subscribers: { type: 'string' }, // list; default 100 (--quick) or 1000
    rate: { type: 'string' }, // the first rate tried
    seconds: { type: 'string' }, // per step
  },
  async run({ quick, runs, flags, cpuProfDir, log }) {
    const sizes = numberList(flags.subscribers, quick ? [100] : [1_000]);
    const rows = [
      '| subscribers | target | highest rate held msg/s | deliveries/s there | p50 ms | p99 ms | reach | server CPU | first rate that failed | steps | ratio vs ws |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
    ];
    const notes: string[] = [];
    const data: SaturationResult[] = [];
    const seconds = numberFlag(flags.seconds, quick ? 1.5 : 3);
    for (const subscribers of sizes) {
      const options: SaturationOptions = {
        subscribers,
        // Start near 20,000 deliveries per second.
        startRate: numberFlag(flags.rate, Math.max(1, Math.round(20_000 / subscribers))),
        seconds,
        precision: quick ? 2 : 1.15,
        maxSteps: quick ? 7 : 12,
        log,
      };
      const results: Record<string, SaturationResult> = {};
      for (const target of TARGETS) {
        const samples: SaturationResult[] = [];
        for (let r = 0; r < runs; r++) {
          log(`saturation: ${target}, ${subscribers} subscribers, ${options.seconds} s steps (run ${r + 1}/${runs})`);
          samples.push(
            await runSaturation(target, { ...options, cpuProfDir: target === 'anode' ? cpuProfDir : undefined }),
          );
        }
        const median = medianOf(samples);
        results[target] = median;
        data.push({ ...median, steps: samples.flatMap((s) => s.steps) });
        notes.push(...saturationNotes(`${subscribers} subscribers, ${target}`, samples));
        if (samples.some((s) => s.first_failed_rate === Number.POSITIVE_INFINITY)) {
          notes.push(
            `- ${subscribers} subscribers, ${target}: no rate failed within ${options.maxSteps} steps; the highest rate held is a lower bound.`,
          );
        }
      }
      const base = results['ws-baseline'] as SaturationResult;
      for (const result of [base, results.anode as SaturationResult]) {
        const failedAt = result.first_failed_rate;
        rows.push(
          `| ${subscribers} | ${result.target} | ${result.max_rate} | ${result.delivered_per_s} | ${fmt(result.p50_ms, 2)} | ${fmt(result.p99_ms, 2)} | ${(result.reach * 100).toFixed(2)}% | ${fmt(result.server_cpu * 100, 0)}% | ${Number.isFinite(failedAt) ? failedAt : '–'} | ${result.step_count} | ${fmt(result.max_rate / base.max_rate, 2)}× |`,
        );
      }
    }
    notes.push(
      `- A step holds when p99 ≤ ${P99_LIMIT_MS} ms and reach ≥ 99.99% (messages not received 0.5 s after the step ends are missing). Rates double from the start rate until a step fails, then bisect${quick ? ' (not with --quick)' : ''}; a failed step restarts the server and subscribers. Steps: ${seconds} s (--seconds). Columns after the rate describe the step at the highest rate held; "steps" is the median number of steps per search.`,
    );
    return { rows, notes, data };
  },
};
