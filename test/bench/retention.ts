// Scenario 9, retention: how far one busy topic outgrows its retention limit, and what keeping it
// there costs. A publisher sends batched HTTP bodies to one topic at a steady rate against a
// relay on its embedded store, with the default sweep interval; every second the topic's size
// (the store's own count) and the database files' size are sampled. The baseline, in the same
// run: the same load against a relay with no count limit (`retention_max_messages` 0), which
// deletes nothing; the relay's CPU per message beside it is what retention costs.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { startBenchRelay } from './mesh-edge-common.ts';
import { processCpuMs } from './stats.ts';
import { fmt, numberFlag, type Scenario } from './scenario.ts';

export interface RetentionOptions {
  /** Messages per second into the one topic. */
  rate: number;
  seconds: number;
  /** `retention_max_messages` (0: no limit, the baseline). */
  limit: number;
  /** `retention_sweep_ms`. */
  sweepMs: number;
  log: (line: string) => void;
}

export interface RetentionResult {
  rate: number;
  sent: number;
  seconds: number;
  limit: number;
  sweep_ms: number;
  peak_messages: number;
  final_messages: number;
  peak_db_mb: number;
  sweeps: number;
  /** The relay's CPU (all threads) per message published. */
  cpu_us_per_message: number;
  /** Topic size once a second. */
  samples: number[];
}

const TOPIC = 'busy';
const BODY = 500;

const fileBytes = async (path: string) => (await stat(path).catch(() => ({ size: 0 }))).size;

export async function runRetention(options: RetentionOptions): Promise<RetentionResult> {
  const relay = await startBenchRelay([
    '--retention-max-messages',
    String(options.limit),
    '--retention-sweep-ms',
    String(options.sweepMs),
  ]);
  // Sweeps that deleted something, from the relay's log lines (a chunk may end inside a line).
  let sweeps = 0;
  let partial = '';
  relay.child.stdout?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    sweeps += lines.filter((line) => line.includes('"retention sweep"')).length;
  });
  const db = join(relay.dataDir, 'messages.sqlite');
  let reader: DatabaseSync | undefined;
  const size = () => {
    reader ??= new DatabaseSync(db, { readOnly: true });
    const row = reader.prepare('SELECT count FROM topics WHERE topic = ?').get(TOPIC) as { count: number } | undefined;
    return row?.count ?? 0;
  };
  const samples: number[] = [];
  let peakDb = 0;
  const sample = async () => {
    samples.push(size());
    peakDb = Math.max(peakDb, (await fileBytes(db)) + (await fileBytes(`${db}-wal`)));
  };
  const body = JSON.stringify(Array.from({ length: BODY }, (_, i) => ({ data: { i, pad: 'x'.repeat(60) } })));
  let sent = 0;
  const cpuBefore = await processCpuMs(relay.pid);
  let cpuMs: number;
  const started = performance.now();
  let nextSample = 1000;
  try {
    while (performance.now() - started < options.seconds * 1000) {
      const elapsed = performance.now() - started;
      if (elapsed >= nextSample) {
        await sample();
        nextSample += 1000;
        if (samples.length % 10 === 0) options.log(`retention: ${samples.length} s, topic holds ${samples.at(-1)}`);
      }
      if (sent >= (elapsed / 1000) * options.rate) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const res = await fetch(`${relay.url}/v1/topics/${TOPIC}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      if (res.status !== 202) throw new Error(`publish answered ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
      sent += BODY;
    }
    await sample();
    cpuMs = (await processCpuMs(relay.pid)) - cpuBefore;
  } finally {
    reader?.close();
    await relay.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    rate: Math.round(sent / seconds),
    sent,
    seconds: Math.round(seconds),
    limit: options.limit,
    sweep_ms: options.sweepMs,
    peak_messages: Math.max(...samples),
    final_messages: samples.at(-1) ?? 0,
    peak_db_mb: peakDb / 2 ** 20,
    sweeps,
    cpu_us_per_message: (cpuMs * 1000) / Math.max(1, sent),
    samples,
  };
}

export const retentionScenario: Scenario = {
  name: 'retention',
  summary: 'one busy topic: its peak size against the retention limit (embedded store)',
  flags: {
    'retention-rate': { type: 'string' },
    'retention-seconds': { type: 'string' },
    'retention-limit': { type: 'string' },
    'retention-sweep-ms': { type: 'string' },
  },
  async run({ quick, flags, log }) {
    const options = {
      rate: numberFlag(flags['retention-rate'], quick ? 5_000 : 15_000),
      seconds: numberFlag(flags['retention-seconds'], quick ? 15 : 90),
      sweepMs: numberFlag(flags['retention-sweep-ms'], 60_000),
      log,
    };
    const limit = numberFlag(flags['retention-limit'], quick ? 10_000 : 100_000);
    const results: RetentionResult[] = [];
    for (const each of [limit, 0]) {
      log(`retention: ${options.rate} msg/s for ${options.seconds} s, limit ${each || 'none'}`);
      results.push(await runRetention({ ...options, limit: each }));
    }
    const row = (r: RetentionResult) =>
      `| ${r.limit || 'none (baseline)'} | ${r.rate} | ${r.seconds} | ${r.sweep_ms / 1000} s | ${r.peak_messages} | ${r.limit ? `${fmt(r.peak_messages / r.limit, 2)}×` : '–'} | ${r.final_messages} | ${r.sweeps} | ${fmt(r.peak_db_mb, 0)} | ${fmt(r.cpu_us_per_message, 1)} |`;
    return {
      rows: [
        '| limit | msg/s into one topic | seconds | sweep interval | peak held | peak / limit | at the end | sweeps that deleted | peak database MiB | relay CPU µs/message |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
        ...results.map(row),
      ],
      notes: [
        "Sizes are sampled once a second from the store's own topic count; CPU is the relay process's, all threads.",
      ],
      data: results,
    };
  },
};
