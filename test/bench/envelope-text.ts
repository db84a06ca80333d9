import {
  assertDataSize,
  checkEnvelope,
  checkPublished,
  createHybridClock,
  dataJson,
  encodeServerFrame,
  type Envelope,
  envelopeText,
} from '@anode/shared';

/**
 * Micro-benchmark of what a relay does with one message's `data` on its way through: checked
 * (its size is its JSON's), framed for subscribers (`msg`) and written to the store, on a client's
 * publish and on an envelope gossip brought (checked by the gossip codec, then by the hub). Ours
 * serializes the data once, in the check; the baseline, measured in the same run, serializes it
 * at each step as the code before the memo did. Rounds alternate; prints medians and the slowest
 * round in µs per message.
 * `node test/bench/envelope-text.ts [messages per round]`
 */
const clock = createHybridClock('bench');
const limits = { maxMessageBytes: 1 << 20 };
const ROUNDS = 9;
const perRound = Number(process.argv[2] ?? 20_000);
const median = (values: number[]) => [...values].sort((x, y) => x - y)[values.length >> 1]!;

const raw = (data: unknown): Envelope => ({
  id: 'm1',
  topic: 'bench.t',
  cursor: clock.next(),
  source: 'c',
  ts: Date.now(),
  data,
});

// Each returns a length so that nothing is optimized away.
const paths = {
  publish: {
    ours(data: unknown) {
      const envelope = checkPublished(raw(data), { ...limits, now: Date.now() });
      return envelopeText(envelope, '"op":"msg",').length + dataJson(envelope).length;
    },
    baseline(data: unknown) {
      const envelope = raw(data);
      assertDataSize(envelope.data, limits);
      return encodeServerFrame({ op: 'msg', ...envelope }).length + JSON.stringify(envelope.data).length;
    },
  },
  gossip: {
    ours(data: unknown) {
      const at = { ...limits, now: Date.now() };
      const envelope = checkEnvelope(checkEnvelope(raw(data), at), at);
      return envelopeText(envelope, '"op":"msg",').length + dataJson(envelope).length;
    },
    baseline(data: unknown) {
      const at = { ...limits, now: Date.now() };
      // A copy is not the object the first check returned: checked again in full, as before.
      const envelope = checkEnvelope({ ...checkEnvelope(raw(data), at) }, at);
      return encodeServerFrame({ op: 'msg', ...envelope }).length + JSON.stringify(envelope.data).length;
    },
  },
};

function round(path: (data: unknown) => number, data: unknown, count: number): number {
  let sink = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) sink += path(data);
  if (sink <= 0) throw new Error('nothing serialized');
  return Number(process.hrtime.bigint() - started) / 1_000 / count;
}

const rows: string[] = [];
for (const bytes of [100, 8 * 1024, 64 * 1024]) {
  const data = { n: 1, at: 1_700_000_000_000, list: [{ i: 0, s: 'abc' }], payload: 'x'.repeat(bytes) };
  const count = Math.max(50, Math.round((perRound * 100) / bytes));
  for (const [name, path] of Object.entries(paths)) {
    round(path.ours, data, count); // warm up both
    round(path.baseline, data, count);
    const results = { ours: [] as number[], baseline: [] as number[] };
    for (let i = 0; i < ROUNDS; i++) {
      results.ours.push(round(path.ours, data, count));
      results.baseline.push(round(path.baseline, data, count));
    }
    const [a, b] = [median(results.ours), median(results.baseline)];
    const worst = (values: number[]) => Math.max(...values).toFixed(2);
    rows.push(
      `${String(bytes).padStart(6)} B ${name.padEnd(7)}: ours ${a.toFixed(2)} µs (slowest ${worst(results.ours)}), ` +
        `baseline ${b.toFixed(2)} µs (slowest ${worst(results.baseline)}): ×${(a / b).toFixed(2)}`,
    );
  }
}
process.stdout.write(
  `data serialized per message, median of ${ROUNDS} alternating rounds (µs per message)\n${rows.join('\n')}\n`,
);
