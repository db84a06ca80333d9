// The mesh's saturation search (like fan-out's, saturation.ts): one publisher on the first relay,
// a subscriber on every relay; raise the open-loop rate (doubling, then bisecting) until the
// last relay's p99 passes 50 ms, a message is missing, or a message needed catch-up (gossip
// alone must carry everything), and report the highest rate that held. The same search runs on
// a single relay (no mesh) in the same run, as the baseline.
import { type BenchRelay } from './mesh-edge-common.ts';
import { type MeshResult, measureWindow, startMesh, warmUp } from './mesh.ts';
import { fmt } from './scenario.ts';

export const MESH_P99_LIMIT_MS = 50;

export interface MeshSaturationOptions {
  relays: number;
  /** The first rate tried (messages per second). */
  startRate: number;
  /** Length of each step (publishing). */
  seconds: number;
  /** Stop refining once the first failing rate is within this factor of the last rate that held. */
  precision: number;
  maxSteps: number;
  cpuProfDir?: string;
  log?: (line: string) => void;
}

export interface MeshSaturationStep extends MeshResult {
  held: boolean;
  why: string;
}

export interface MeshSaturationResult {
  relays: number;
  /** The highest rate that held (0 when even the lowest rate tried failed). */
  max_rate: number;
  /** The lowest rate that failed (Infinity when none did within maxSteps). */
  first_failed_rate: number;
  /** The step at the highest rate held (or the first step when none held). */
  at: MeshSaturationStep | undefined;
  steps: MeshSaturationStep[];
}

const verdict = (m: MeshResult): string => {
  const reasons: string[] = [];
  if (!(m.p99_ms <= MESH_P99_LIMIT_MS)) reasons.push(`p99 ${fmt(m.p99_ms, 1)} ms`);
  if (m.reach < 1) reasons.push(`reach ${(m.reach * 100).toFixed(3)}%`);
  if (m.caught_up > 0) reasons.push(`${m.caught_up} by catch-up`);
  return reasons.join(', ');
};

export async function runMeshSaturation(options: MeshSaturationOptions): Promise<MeshSaturationResult> {
  const log = options.log ?? (() => {});
  const steps: MeshSaturationStep[] = [];
  let cluster: BenchRelay[] | undefined;
  let best: MeshSaturationStep | undefined;
  let failed: number | undefined;
  let rate = options.startRate;
  let retried: number | undefined;
  try {
    while (steps.length < options.maxSteps) {
      if (!cluster) {
        cluster = await startMesh(options.relays, options.cpuProfDir);
        // At half the rate: warm (see warmUp) without a backlog a failing rate would leave.
        await warmUp(cluster, Math.max(1, Math.floor(rate / 2)));
      }
      const messages = Math.max(50, Math.round(rate * options.seconds));
      const m = await measureWindow(cluster, messages, rate, 1_000);
      const why = verdict(m);
      const step = { ...m, held: why === '', why };
      steps.push(step);
      log(
        `mesh saturation: ${options.relays} relay${options.relays > 1 ? 's' : ''}, ${rate}/s: ${step.held ? 'held' : `failed (${why})`}; p99 ${fmt(m.p99_ms, 1)} ms, ${fmt(m.cpu_us_per_message_per_relay, 0)} µs CPU/msg/relay, ${fmt(m.copies_per_message, 2)} copies/msg, ${m.dropped} dropped`,
      );
      if (!step.held) {
        // A failed step leaves a backlog (and catch-up work): the next one runs on a fresh cluster.
        await Promise.all(cluster.map((r) => r.stop()));
        cluster = undefined;
      }
      // One stall of a few tens of milliseconds sets a short step's p99 on a shared machine: a
      // rate fails only when a second try (fresh cluster) fails too.
      if (!step.held && retried !== rate) {
        retried = rate;
        continue;
      }
      if (step.held) {
        if (!best || rate > best.rate) best = step;
      } else {
        failed = failed === undefined ? rate : Math.min(failed, rate);
      }
      if (failed === undefined) rate *= 2;
      else if (!best) rate = Math.max(1, Math.floor(rate / 2));
      else if (failed / best.rate <= options.precision) break;
      else rate = Math.round((best.rate + failed) / 2);
      if (best && rate <= best.rate) break;
      if (!best && failed !== undefined && rate >= failed) break;
    }
  } finally {
    if (cluster) await Promise.all(cluster.map((r) => r.stop()));
  }
  return {
    relays: options.relays,
    max_rate: best?.rate ?? 0,
    first_failed_rate: failed ?? Number.POSITIVE_INFINITY,
    at: best ?? steps[0],
    steps,
  };
}
