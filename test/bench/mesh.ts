// Scenario 3, relay mesh: N relays on loopback in a gossipsub mesh; one publisher on the first
// relay, one subscriber on every relay. Measures the time from publish to the LAST relay's
// subscriber per message (p50/p99), gossip copies on the wire per message, and the whole mesh's
// CPU per message; baseline in the same run: the same messages through a single relay (no mesh).
import { cpus } from 'node:os';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { asArgs, meshStatus, waitForFullMesh } from '../helpers/mesh.ts';
import {
  type BenchRelay,
  counter,
  lastArrival,
  loadgenShare,
  SATURATED,
  startBenchRelay,
  startLoadgen,
  summarize,
} from './mesh-edge-common.ts';
import { MESH_P99_LIMIT_MS, type MeshSaturationResult, runMeshSaturation } from './mesh-saturation.ts';
import { fmt, medianOf, numberFlag, numberList, type Scenario } from './scenario.ts';
import { processCpuMs } from './stats.ts';

const TOPIC = 'bench.mesh';
const COPIES = 'anode_mesh_gossip_copies_received_total';
const DROPPED = 'anode_mesh_gossip_dropped_total';
const CAUGHT_UP = 'anode_mesh_catch_up_messages_total';
const HOPS = 'anode_mesh_gossip_hops_total';
/**
 * The idle window: it starts IDLE_SETTLE_MS after the load generator's sockets are up (their
 * subscriptions still ripple through the mesh just after) and lasts IDLE_MS. Measured from the
 * first moment over 1.5 s, a 9-relay mesh's idle read 0.43-0.61 cores against 0.40-0.45 over
 * 3-4 s later on (2026-12-02), and the excess was subtracted from the messages' CPU.
 */
const IDLE_SETTLE_MS = 1_000;
const IDLE_MS = 3_000;
/**
 * The relays run the mesh defaults a user gets (discovery announcements and pings every 10 s).
 * Until 2026-11-30 the bench announced every 2 s and pinged every 5 s to form faster: that alone
 * was a third of a 9-relay mesh's idle CPU (45 against 30 ms/s per relay), which the measured
 * messages then queued behind on two cores.
 */
const BENCH_MESH: Record<string, string> = {};

export interface MeshOptions {
  /** 1: the single-relay baseline (no mesh). */
  relays: number;
  messages: number;
  rate: number;
  runs: number;
  cpuProfDir?: string;
  log?: (line: string) => void;
}

export interface MeshResult {
  target: 'single-relay' | 'mesh';
  relays: number;
  messages: number;
  rate: number;
  /** Publish → the last relay's subscriber, per message. */
  p50_ms: number;
  p99_ms: number;
  /** Publish → a subscriber on another relay than the publisher's, every (message, relay). */
  p50_remote_ms: number;
  /** Share of (message, relay) pairs delivered. */
  reach: number;
  /** Client-level repeats seen by the subscribers (should be 0: the relays dedup). */
  repeats: number;
  /** Gossip copies received by all relays together, per message. */
  copies_per_message: number;
  /** copies_per_message − (relays − 1): copies beyond the one each other relay needs. */
  duplicates_per_message: number;
  /** CPU of all relay processes together per message, net of what they burn idle (heartbeats, discovery). */
  relay_cpu_us_per_message: number;
  /** The same per relay (all relays' CPU / relays). */
  cpu_us_per_message_per_relay: number;
  /** Envelopes gossip counted as not delivered (anode_mesh_gossip_dropped_total, all relays). */
  dropped: number;
  /** Messages that reached a relay by catch-up instead of gossip (all relays). */
  caught_up: number;
  /** Share of gossip deliveries whose first copy came straight from the publishing relay (1 hop; the rest were forwarded). */
  one_hop_share: number;
  /** CPU of all relay processes together while idle (just before the window), in cores. */
  idle_cpu_cores: number;
  /** CPU of all relay processes together over the window, in cores (the machine has cpus().length). */
  relay_cpu_cores: number;
  loadgen_cpu_share: number;
}

export async function startMesh(count: number, cpuProfDir?: string): Promise<BenchRelay[]> {
  if (count === 1) return [await startBenchRelay([], { cpuProfDir })];
  const relays: BenchRelay[] = [];
  try {
    relays.push(await startBenchRelay([...asArgs(BENCH_MESH), '--listen', '/ip4/127.0.0.1/tcp/0'], { cpuProfDir }));
    const bootstrap = (await meshStatus(relays[0]?.url as string)).node.multiaddrs[0] as string;
    // The others know only the first; discovery finds the rest. Started a few at a time (two cores).
    for (let i = 1; i < count; i += 4) {
      const batch = Math.min(4, count - i);
      relays.push(
        ...(await Promise.all(
          Array.from({ length: batch }, () =>
            startBenchRelay([...asArgs(BENCH_MESH), '--bootstrap', bootstrap], { cpuProfDir }),
          ),
        )),
      );
    }
    // Up to 9 relays, every pair connected; beyond, gossip needs no full mesh (and 300
    // connections among 25 relays on two cores take minutes to settle): D = 6 peers each.
    await waitForFullMesh(
      relays.map((r) => r.url),
      createShards(32).gossipTopic(TOPIC),
      count > 9 ? 180_000 : 60_000,
      count > 9 ? 6 : count - 1,
    );
    return relays;
  } catch (error) {
    await Promise.all(relays.map((r) => r.stop()));
    throw error;
  }
}

/** One publisher on the first relay at `rate`/s, a subscriber on every relay. */
const meshLoad = (relays: BenchRelay[], messages: number, rate: number, drainMs: number) =>
  startLoadgen({
    mode: 'latency',
    publish: `${relays[0]?.wsUrl}/v1/topics/${TOPIC}/ws`,
    subscribe: relays.map((r) => `${r.wsUrl}/v1/topics/${TOPIC}/ws`),
    topic: TOPIC,
    count: messages,
    rate,
    inflight: 0,
    warmup: 20,
    drainMs,
  });

/**
 * What a cluster runs before its first measured window: `rate`/s for WARM_UP_MS, not measured. A
 * relay's first second under load runs code V8 has not optimised yet: measured cold, a fresh
 * 3-relay mesh at 9,000/s had a p99 of 126–196 ms in its first window and 16–31 ms in the next,
 * so a search that restarts the cluster after a failed step measured the start-up, not the rate.
 */
const WARM_UP_MS = 2_000;
export async function warmUp(relays: BenchRelay[], rate: number): Promise<void> {
  const loadgen = await meshLoad(relays, Math.max(50, Math.round((rate * WARM_UP_MS) / 1000)), rate, 1_000);
  await loadgen.go();
}

/** One measured window on a running cluster: `messages` at `rate`/s, stragglers awaited `drainMs`. */
export async function measureWindow(
  relays: BenchRelay[],
  messages: number,
  rate: number,
  drainMs: number,
): Promise<MeshResult> {
  const loadgen = await meshLoad(relays, messages, rate, drainMs);
  const sum = async (name: string) =>
    (await Promise.all(relays.map((r) => counter(r.url, name)))).reduce((a, b) => a + b, 0);
  const copiesBefore = await sum(COPIES);
  const droppedBefore = await sum(DROPPED);
  const caughtUpBefore = await sum(CAUGHT_UP);
  const hopsBefore = [await sum(`${HOPS}{hops="1"}`), await sum(HOPS)];
  // The cluster's idle CPU (gossipsub heartbeats, discovery, pings), subtracted below.
  await new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS));
  const idleFrom = await Promise.all(relays.map((r) => processCpuMs(r.pid)));
  const idleStart = performance.now();
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  const cpuBefore = await Promise.all(relays.map((r) => processCpuMs(r.pid)));
  const idleCores = cpuBefore.reduce((n, c, i) => n + c - (idleFrom[i] as number), 0) / (performance.now() - idleStart);
  const report = await loadgen.go();
  const cpuAfter = await Promise.all(relays.map((r) => processCpuMs(r.pid)));
  const copies = (await sum(COPIES)) - copiesBefore;
  const cpuMs = cpuAfter.reduce((n, c, i) => n + c - (cpuBefore[i] as number), 0);
  const last = summarize(lastArrival(report.latencies));
  const all = summarize(report.latencies.flat());
  const remote = summarize(report.latencies.slice(1).flat());
  const perMessage = copies / messages;
  const cpuPerMessage = ((cpuMs - idleCores * report.wallMs) * 1000) / messages;
  return {
    target: relays.length === 1 ? 'single-relay' : 'mesh',
    relays: relays.length,
    messages,
    rate,
    p50_ms: last.p50,
    p99_ms: last.p99,
    p50_remote_ms: relays.length === 1 ? Number.NaN : remote.p50,
    reach: all.reach,
    repeats: report.repeats.reduce((a, b) => a + b, 0),
    copies_per_message: perMessage,
    duplicates_per_message: perMessage - (relays.length - 1),
    relay_cpu_us_per_message: cpuPerMessage,
    cpu_us_per_message_per_relay: cpuPerMessage / relays.length,
    dropped: (await sum(DROPPED)) - droppedBefore,
    caught_up: (await sum(CAUGHT_UP)) - caughtUpBefore,
    one_hop_share:
      ((await sum(`${HOPS}{hops="1"}`)) - (hopsBefore[0] as number)) / ((await sum(HOPS)) - (hopsBefore[1] as number)),
    idle_cpu_cores: idleCores,
    relay_cpu_cores: cpuMs / report.wallMs,
    loadgen_cpu_share: loadgenShare(report),
  };
}

/** One cluster (a mesh of `relays`, or a single relay), `runs` measured windows on it; one result per run. */
export async function runMesh(options: MeshOptions): Promise<MeshResult[]> {
  const log = options.log ?? (() => {});
  log(`mesh: starting ${options.relays} relay${options.relays > 1 ? 's' : ''}`);
  const relays = await startMesh(options.relays, options.cpuProfDir);
  const results: MeshResult[] = [];
  try {
    await warmUp(relays, options.rate);
    for (let run = 0; run < options.runs; run++) {
      log(
        `mesh: ${options.relays} relays, ${options.messages} messages at ${options.rate}/s (run ${run + 1}/${options.runs})`,
      );
      results.push(await measureWindow(relays, options.messages, options.rate, 10_000));
    }
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
  }
  return results;
}

export const meshScenario: Scenario = {
  name: 'mesh',
  summary:
    '3, 5 and 9 relays: publish to the last relay subscriber, copies and CPU per message (vs one relay); then the mesh saturation search',
  flags: {
    relays: { type: 'string' }, // list, e.g. 3,5,9
    messages: { type: 'string' },
    rate: { type: 'string' },
    'saturation-relays': { type: 'string' }, // list; the mesh sizes searched (default 3)
    'saturation-rate': { type: 'string' }, // the first rate tried
    seconds: { type: 'string' }, // per saturation step
    'no-saturation': { type: 'boolean' },
  },
  async run({ quick, runs, flags, cpuProfDir, log }) {
    const sizes = numberList(flags.relays, quick ? [3] : [3, 5, 9]);
    const messages = numberFlag(flags.messages, quick ? 200 : 500);
    const rate = numberFlag(flags.rate, 50);
    const rows = [
      '| relays | target | p50 ms (last relay) | p99 ms (last relay) | p50 ms (any other relay) | reach | by catch-up | gossip copies/msg | duplicates/msg | 1 hop | dropped | relay CPU µs/msg (all relays, net of idle) | per relay | relay CPU cores (idle) | p99 vs single relay |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ];
    const notes: string[] = [];
    const data: MeshResult[] = [];
    const measured: MeshResult[][] = [];
    for (const relays of [1, ...sizes.filter((n) => n > 1)]) {
      const samples = await runMesh({ relays, messages, rate, runs, cpuProfDir, log });
      measured.push(samples);
      data.push(medianOf(samples));
    }
    const base = data[0] as MeshResult;
    for (const result of data) {
      rows.push(
        `| ${result.relays} | ${result.target} | ${fmt(result.p50_ms, 2)} | ${fmt(result.p99_ms, 2)} | ${fmt(result.p50_remote_ms, 2)} | ${(result.reach * 100).toFixed(2)}% | ${result.caught_up} | ${fmt(result.copies_per_message, 2)} | ${fmt(result.duplicates_per_message, 2)} | ${result.relays === 1 ? '–' : `${(result.one_hop_share * 100).toFixed(0)}%`} | ${result.dropped} | ${fmt(result.relay_cpu_us_per_message, 0)} | ${fmt(result.cpu_us_per_message_per_relay, 0)} | ${fmt(result.relay_cpu_cores, 2)} (${fmt(result.idle_cpu_cores, 2)}) | ${fmt(result.p99_ms / base.p99_ms, 2)}× |`,
      );
    }
    notes.push(
      `${messages} messages of ~100 bytes at ${rate}/s from one publisher on relay 1; a subscriber on every relay. ` +
        'By catch-up: messages a relay got from catch-up rather than gossip (anode_mesh_catch_up_messages_total). ' +
        'Gossip copies/msg: envelope copies received by all relays together, in gossip batches (new ones and the ones gossipsub drops as already seen: ' +
        `anode_mesh_gossip_copies_received_total); duplicates/msg = copies/msg − (relays − 1), 0 being one copy per other relay. ` +
        '1 hop: share of gossip deliveries whose first copy came straight from relay 1 (the rest were forwarded; anode_mesh_gossip_hops_total). ' +
        'Dropped: envelopes gossip counted as undelivered (anode_mesh_gossip_dropped_total). ' +
        'Relays store every message (persist all, embedded store, no fsync), run the mesh defaults (discovery and pings every 10 s), one cluster per size, warmed by 2 s at the rate (not measured), runs are windows on it.',
    );
    const busiest = Math.max(...measured.flat().map((r) => r.loadgen_cpu_share));
    notes.push(
      busiest > SATURATED
        ? `Load generator SATURATED: up to ${(busiest * 100).toFixed(0)}% of a core; latencies include its queueing.`
        : `Load generator (one process, separate from the relays): at most ${(busiest * 100).toFixed(0)}% of a core, not saturated.`,
    );
    const cores = cpus().length;
    const hot = data.filter((r) => r.relay_cpu_cores > 0.7 * cores);
    if (hot.length > 0)
      notes.push(
        `The relays together used ${hot.map((r) => `${fmt(r.relay_cpu_cores, 2)} cores at ${r.relays} relays`).join(', ')} of ${cores}: ` +
          'the machine, not the mesh, sets those latencies (lower --rate to see the mesh alone).',
      );
    const missed = data.filter((r) => r.reach < 1 || r.repeats > 0);
    if (missed.length > 0)
      notes.push(
        `Not every message reached every relay exactly once: ${missed.map((r) => `${r.relays} relays ${(r.reach * 100).toFixed(2)}%, ${r.repeats} repeats`).join('; ')}.`,
      );
    if (flags['no-saturation'] === true) return { rows, notes, data: { medians: data, runs: measured } };

    const saturation = await meshSaturationTable({
      sizes: numberList(flags['saturation-relays'], [3]),
      startRate: numberFlag(flags['saturation-rate'], quick ? 250 : 500),
      seconds: numberFlag(flags.seconds, quick ? 2 : 4),
      precision: quick ? 2 : 1.15,
      maxSteps: quick ? 6 : 14,
      runs,
      cpuProfDir,
      log,
    });
    return {
      rows: [...rows, '', ...saturation.rows],
      notes: [...notes, ...saturation.notes],
      data: { medians: data, runs: measured, saturation: saturation.data },
    };
  },
};

/** The saturation search on one relay and on each mesh size, as a table. */
export async function meshSaturationTable(options: {
  sizes: number[];
  startRate: number;
  seconds: number;
  precision: number;
  maxSteps: number;
  runs: number;
  cpuProfDir?: string;
  log: (line: string) => void;
}) {
  const rows = [
    `| relays | target | highest rate held msg/s (p99 ≤ ${MESH_P99_LIMIT_MS} ms, all by gossip) | vs single relay | p50 ms | p99 ms (last relay) | relay CPU µs/msg/relay there | vs single relay | copies/msg | dropped | first rate that failed (why) | steps |`,
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const data: MeshSaturationResult[] = [];
  let base: MeshSaturationResult | undefined;
  for (const relays of [1, ...options.sizes.filter((n) => n > 1)]) {
    const samples: MeshSaturationResult[] = [];
    for (let r = 0; r < options.runs; r++) samples.push(await runMeshSaturation({ ...options, relays }));
    samples.sort((a, b) => a.max_rate - b.max_rate);
    const result = samples[Math.floor((samples.length - 1) / 2)] as MeshSaturationResult;
    base ??= result;
    data.push(...samples);
    const at = result.at;
    const failedStep = result.steps.find((s) => s.rate === result.first_failed_rate);
    rows.push(
      `| ${relays} | ${relays === 1 ? 'single-relay' : 'mesh'} | ${result.max_rate} | ${fmt(result.max_rate / base.max_rate, 2)}× | ${fmt(at?.p50_ms ?? Number.NaN, 2)} | ${fmt(at?.p99_ms ?? Number.NaN, 2)} | ${fmt(at?.cpu_us_per_message_per_relay ?? Number.NaN, 0)} | ${fmt((at?.cpu_us_per_message_per_relay ?? Number.NaN) / (base.at?.cpu_us_per_message_per_relay ?? Number.NaN), 2)}× | ${fmt(at?.copies_per_message ?? Number.NaN, 2)} | ${at?.dropped ?? '–'} | ${failedStep ? `${failedStep.rate} (${failedStep.why})` : '–'} | ${result.steps.length} |`,
    );
  }
  const notes = [
    `- Mesh saturation: one publisher on relay 1, a subscriber on every relay; a step holds when the last relay's p99 ≤ ${MESH_P99_LIMIT_MS} ms, every message reached every relay, and none needed catch-up (messages not received 1 s after a step are missing). Rates double from ${options.startRate}/s until a step fails twice in a row (the second try on a fresh cluster), then bisect; a failed step restarts the cluster, and every fresh cluster first runs 2 s at half the rate, not measured (a cold relay's first second is slower). Steps: ${options.seconds} s. Columns after the rate describe the step at the highest rate held.`,
  ];
  return { rows, notes, data };
}
