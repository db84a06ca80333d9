import type { LabPlan } from './lab.ts';
import { heal, partition } from './lab.ts';
import type { ChaosRelay } from './relays.ts';

/**
 * The seeded fault schedule. One fault at a time, each held for a random while and then healed,
 * with a quiet spell between faults; the same seed gives the same sequence of kinds, targets and
 * durations (wall-clock effects still vary with the machine's load).
 */
export type FaultKind = 'kill' | 'pause' | 'partition' | 'edge-link' | 'cassandra';

export interface FaultRecord {
  kind: FaultKind;
  detail: string;
  startedAt: number;
  healedAt: number;
}

/** mulberry32: small, fast, and good enough to make a schedule repeatable. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FaultTargets {
  /** Only these kinds (all when absent; empty: a baseline run without faults). */
  only?: FaultKind[];
  plan: LabPlan;
  relays: ChaosRelay[];
  /** Cut the edge link for a while (undefined: no edge in this run). */
  edgeLink?: { cut(): void; restore(): void };
  cassandra?: { stop(): Promise<void>; start(): Promise<void> };
}

const WEIGHTS: [FaultKind, number][] = [
  ['kill', 3],
  ['pause', 2],
  ['partition', 3],
  ['edge-link', 2],
  ['cassandra', 2],
];

export interface FaultSchedule {
  /** Runs faults until `until`; calls `onHeal` after each one is healed. */
  run(
    until: number,
    onHeal: (fault: FaultRecord) => Promise<void>,
    onStart: (kind: FaultKind, detail: string) => void,
  ): Promise<void>;
  readonly records: FaultRecord[];
  /** What went wrong while injecting or healing (a relay that would not come back). */
  readonly problems: string[];
}

export function createFaultSchedule(seed: number, targets: FaultTargets): FaultSchedule {
  const random = seededRandom(seed);
  const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const kinds = WEIGHTS.filter(([kind]) => {
    if (targets.only && !targets.only.includes(kind)) return false;
    if (kind === 'edge-link') return targets.edgeLink !== undefined;
    if (kind === 'cassandra') return targets.cassandra !== undefined;
    return true;
  });
  const total = kinds.reduce((sum, [, w]) => sum + w, 0);
  const pickKind = (): FaultKind => {
    let r = random() * total;
    for (const [kind, weight] of kinds) {
      r -= weight;
      if (r < 0) return kind;
    }
    return 'kill';
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const records: FaultRecord[] = [];
  const problems: string[] = [];
  const n = targets.relays.length;

  const inject = async (kind: FaultKind, onStart: (kind: FaultKind, detail: string) => void): Promise<string> => {
    switch (kind) {
      case 'kill': {
        const relay = targets.relays[between(0, n - 1)] as ChaosRelay;
        const downMs = between(500, 8_000);
        onStart(kind, `relay ${relay.index} for ${downMs} ms`);
        await relay.kill();
        await sleep(downMs);
        try {
          await relay.start();
        } catch (error) {
          problems.push(`restart after SIGKILL: ${(error as Error).message}`);
        }
        return `relay ${relay.index} down ${downMs} ms`;
      }
      case 'pause': {
        const relay = targets.relays[between(0, n - 1)] as ChaosRelay;
        const pausedMs = between(1_000, 12_000);
        onStart(kind, `relay ${relay.index} for ${pausedMs} ms`);
        relay.pause();
        await sleep(pausedMs);
        relay.resume();
        return `relay ${relay.index} stopped ${pausedMs} ms`;
      }
      case 'partition': {
        const order = [...Array(n).keys()].sort(() => random() - 0.5);
        const cut = between(1, n - 1);
        const groups = [order.slice(0, cut), order.slice(cut)];
        const splitMs = between(3_000, 20_000);
        const detail = `${groups.map((g) => `{${g.join(',')}}`).join(' | ')} for ${splitMs} ms`;
        onStart(kind, detail);
        partition(targets.plan, groups);
        await sleep(splitMs);
        heal(targets.plan);
        return detail;
      }
      case 'edge-link': {
        const cutMs = between(1_000, 10_000);
        onStart(kind, `for ${cutMs} ms`);
        targets.edgeLink?.cut();
        await sleep(cutMs);
        targets.edgeLink?.restore();
        return `cut ${cutMs} ms`;
      }
      case 'cassandra': {
        const downMs = between(2_000, 15_000);
        onStart(kind, `down for ${downMs} ms`);
        await targets.cassandra?.stop();
        await sleep(downMs);
        await targets.cassandra?.start();
        return `down ${downMs} ms`;
      }
    }
  };

  return {
    records,
    problems,
    async run(until, onHeal, onStart) {
      while (Date.now() < until) {
        await sleep(between(2_000, 8_000));
        if (Date.now() >= until) break;
        if (kinds.length === 0) continue;
        const kind = pickKind();
        const startedAt = Date.now();
        const detail = await inject(kind, onStart);
        const record = { kind, detail, startedAt, healedAt: Date.now() };
        records.push(record);
        await onHeal(record);
      }
    },
  };
}
