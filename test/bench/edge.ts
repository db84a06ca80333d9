// Scenario 4, edge: the Worker on workerd (miniflare, as in the e2e tests) linked to a relay
// process. Latency windows (open-loop publishes, a subscriber at the edge and one on the relay):
// publish at the edge → edge subscriber and → relay subscriber, beside the baseline publish on
// the relay → relay subscriber (and relay → edge subscriber). Throughput windows: pipelined
// publishes, acks/s at the edge vs on the relay, and when everything reached the relay's subscriber.
import { type EdgeRuntime, freePort, startEdge } from '../../worker/test-support/edge-runtime.ts';
import {
  type BenchRelay,
  descendantsNamed,
  loadgenShare,
  SATURATED,
  startBenchRelay,
  startLoadgen,
  summarize,
  treeCpuMs,
} from './mesh-edge-common.ts';
import type { LoadgenReport } from './mesh-edge-loadgen.ts';
import { type EdgeSocketsResult, measureEdgeSockets } from './edge-sockets.ts';
import { fmt, medianOf, numberFlag, type Scenario } from './scenario.ts';

const LINK_SECRET = 'bench-edge-link-secret-0123456789';

export interface EdgeOptions {
  messages: number;
  rate: number;
  /** Publishes in the acks/s window, and how many may be unacked at once. */
  publishes: number;
  inflight: number;
  runs: number;
  cpuProfDir?: string;
  log?: (line: string) => void;
}

/** One path (publisher → subscriber) in one run. */
export interface EdgePathResult {
  path: 'relay→relay' | 'relay→edge' | 'edge→edge' | 'edge→relay';
  p50_ms: number;
  p99_ms: number;
  reach: number;
  repeats: number;
}

/** One publisher (where it publishes) in one run: the latency and the throughput windows. */
export interface EdgePublisherResult {
  publisher: 'relay' | 'edge';
  acks_per_s: number;
  /** Publishes per second that reached a subscriber on the relay (over the whole window). */
  relay_delivered_per_s: number;
  /** CPU of the relay / workerd per message in the latency window. */
  relay_cpu_us_per_message: number;
  edge_cpu_us_per_message: number;
  loadgen_cpu_share: number;
}

export interface EdgeRun {
  paths: EdgePathResult[];
  publishers: EdgePublisherResult[];
  sockets: EdgeSocketsResult[];
}

const topicSocket = (wsUrl: string, topic: string) => `${wsUrl}/v1/topics/${topic}/ws`;

export async function runEdge(options: EdgeOptions): Promise<EdgeRun[]> {
  const log = options.log ?? (() => {});
  log('edge: starting a relay and the Worker on workerd (miniflare)');
  const edgeUrl = `http://127.0.0.1:${await freePort()}`; // pinned on both sides
  const relay: BenchRelay = await startBenchRelay([], {
    env: { ANODE_EDGE_LINK_SECRET: LINK_SECRET, ANODE_EDGE_URL: edgeUrl },
    cpuProfDir: options.cpuProfDir,
  });
  let edge: EdgeRuntime | undefined;
  const runs: EdgeRun[] = [];
  try {
    edge = await startEdge({
      RELAY_URLS: relay.url,
      LINK_SECRET,
      EDGE_URL: edgeUrl,
      LINK_WAIT_MS: '2000',
      LINK_RETRY_MAX_MS: '400',
      PUBLISH_RATE: '1000000',
      PUBLISH_BURST: '1000000',
    });
    const urls = { relay: relay.wsUrl, edge: edge.wsUrl };
    const workerd = await descendantsNamed(process.pid, 'workerd');
    const cpu = async () => {
      let edgeMs = 0;
      for (const pid of workerd) edgeMs += await treeCpuMs(pid);
      return { relay: await treeCpuMs(relay.pid), edge: workerd.length > 0 ? edgeMs : Number.NaN };
    };
    for (let run = 0; run < options.runs; run++) {
      const paths: EdgePathResult[] = [];
      const publishers: EdgePublisherResult[] = [];
      for (const publisher of ['relay', 'edge'] as const) {
        // Fresh topics per run: a new Durable Object and relay link each time, warmed up first.
        const topic = `bench.edge.${publisher}.r${run}`;
        log(
          `edge: publish on the ${publisher}, ${options.messages} messages at ${options.rate}/s (run ${run + 1}/${options.runs})`,
        );
        const latency = await startLoadgen({
          mode: 'latency',
          publish: topicSocket(urls[publisher], topic),
          subscribe: [topicSocket(urls.relay, topic), topicSocket(urls.edge, topic)],
          topic,
          count: options.messages,
          rate: options.rate,
          inflight: 0,
          warmup: 20,
          drainMs: 10_000,
        });
        const before = await cpu();
        const report: LoadgenReport = await latency.go();
        const after = await cpu();
        for (const [i, at] of (['relay', 'edge'] as const).entries()) {
          const summary = summarize(report.latencies[i] ?? []);
          paths.push({
            path: `${publisher}→${at}`,
            p50_ms: summary.p50,
            p99_ms: summary.p99,
            reach: summary.reach,
            repeats: report.repeats[i] ?? 0,
          });
        }
        log(`edge: publish on the ${publisher}, ${options.publishes} publishes, ${options.inflight} in flight`);
        const ackTopic = `${topic}.acks`;
        const acks = await startLoadgen({
          mode: 'acks',
          publish: topicSocket(urls[publisher], ackTopic),
          subscribe: [topicSocket(urls.relay, ackTopic)],
          topic: ackTopic,
          count: options.publishes,
          rate: 0,
          inflight: options.inflight,
          warmup: 20,
          drainMs: 30_000,
        });
        const ackReport = await acks.go();
        publishers.push({
          publisher,
          acks_per_s: ackReport.acked / (ackReport.ackMs / 1000),
          relay_delivered_per_s: Number.isFinite(ackReport.deliveredMs)
            ? options.publishes / (ackReport.deliveredMs / 1000)
            : Number.NaN,
          relay_cpu_us_per_message: ((after.relay - before.relay) * 1000) / options.messages,
          edge_cpu_us_per_message: ((after.edge - before.edge) * 1000) / options.messages,
          loadgen_cpu_share: Math.max(loadgenShare(report), loadgenShare(ackReport)),
        });
      }
      const sockets = await measureEdgeSockets(urls, { messages: options.messages, rate: options.rate, run, log });
      runs.push({ paths, publishers, sockets });
    }
  } finally {
    await edge?.stop();
    await relay.stop();
  }
  return runs;
}

export const edgeScenario: Scenario = {
  name: 'edge',
  summary: 'publish and subscribe through the Worker under miniflare into a relay (vs on the relay directly)',
  flags: {
    messages: { type: 'string' },
    rate: { type: 'string' },
    publishes: { type: 'string' },
    inflight: { type: 'string' },
  },
  async run({ quick, runs, flags, cpuProfDir, log }) {
    const options: EdgeOptions = {
      messages: numberFlag(flags.messages, quick ? 200 : 500),
      rate: numberFlag(flags.rate, 100),
      publishes: numberFlag(flags.publishes, quick ? 500 : 2_000),
      inflight: numberFlag(flags.inflight, 32),
      runs,
      cpuProfDir,
      log,
    };
    const measured = await runEdge(options);
    const paths = (['relay→relay', 'relay→edge', 'edge→edge', 'edge→relay'] as const).map((path) =>
      medianOf(measured.map((r) => r.paths.find((p) => p.path === path) as EdgePathResult)),
    );
    const publishers = (['relay', 'edge'] as const).map((publisher) =>
      medianOf(measured.map((r) => r.publishers.find((p) => p.publisher === publisher) as EdgePublisherResult)),
    );
    const sockets = (measured[0]?.sockets ?? []).map((first) =>
      medianOf(measured.map((r) => r.sockets.find((s) => s.case === first.case) as EdgeSocketsResult)),
    );
    const base = paths[0] as EdgePathResult;
    const rows = [
      '| publish on → subscriber on | p50 ms | p99 ms | reach | p99 vs relay→relay |',
      '|---|---|---|---|---|',
      ...paths.map(
        (p) =>
          `| ${p.path}${p.path === 'relay→relay' ? ' (baseline)' : ''} | ${fmt(p.p50_ms, 2)} | ${fmt(p.p99_ms, 2)} | ${(p.reach * 100).toFixed(2)}% | ${fmt(p.p99_ms / base.p99_ms, 2)}× |`,
      ),
      '',
      '| publish on | acks/s | reached a relay subscriber /s | relay CPU µs/msg | edge (workerd) CPU µs/msg |',
      '|---|---|---|---|---|',
      ...publishers.map(
        (p) =>
          `| ${p.publisher}${p.publisher === 'relay' ? ' (baseline)' : ''} | ${fmt(p.acks_per_s, 0)} | ${fmt(p.relay_delivered_per_s, 0)} | ${fmt(p.relay_cpu_us_per_message, 0)} | ${fmt(p.edge_cpu_us_per_message, 0)} |`,
      ),
      '',
      '| edge connection | subscribe ms | p50 ms | p99 ms | reach | p99 vs edge→edge |',
      '|---|---|---|---|---|---|',
      ...sockets.map(
        (s) =>
          `| ${s.case} | ${fmt(s.subscribe_ms, 0)} | ${fmt(s.p50_ms, 2)} | ${fmt(s.p99_ms, 2)} | ${(s.reach * 100).toFixed(2)}%${s.repeats > 0 ? ` (${s.repeats} repeats)` : ''} | ${fmt(s.p99_ms / (paths[2] as EdgePathResult).p99_ms, 2)}× |`,
      ),
    ];
    const notes = [
      `Latency: ${options.messages} messages of ~100 bytes at ${options.rate}/s over a WebSocket, one subscriber on the relay and one at the edge. ` +
        `Throughput: ${options.publishes} publishes with up to ${options.inflight} unacked; an edge ack means stored in the Durable Object (forwarded to the relay after), a relay ack means stored on the relay. ` +
        'CPU per message is over the latency window, where the relay link carries every message either way.',
    ];
    const busiest = Math.max(...measured.flatMap((r) => r.publishers.map((p) => p.loadgen_cpu_share)));
    notes.push(
      busiest > SATURATED
        ? `Load generator SATURATED: up to ${(busiest * 100).toFixed(0)}% of a core (the acks/s figures may be its limit).`
        : `Load generator (one process, separate from relay and workerd): at most ${(busiest * 100).toFixed(0)}% of a core, not saturated.`,
    );
    const missed = paths.filter((p) => p.reach < 1 || p.repeats > 0);
    if (missed.length > 0)
      notes.push(
        `Not delivered exactly once everywhere: ${missed.map((p) => `${p.path} ${(p.reach * 100).toFixed(2)}%, ${p.repeats} repeats`).join('; ')}.`,
      );
    notes.push(
      `Edge connections (docs/edge-sockets.md): ${options.messages} messages at ${options.rate}/s, timed in the bench process; ` +
        '"100 topics" is one /v1/ws socket subscribed to 100 topics (each a Durable Object) fed round-robin by a publisher at the edge; ' +
        'the pattern rows are one /v1/ws socket at the edge subscribed to a pattern (served through the relay) over 10 topics. Each topic got one warm-up message first (its object and relay link up), so these are steady-state figures.',
    );
    return { rows, notes, data: { paths, publishers, sockets, runs: measured } };
  },
};
