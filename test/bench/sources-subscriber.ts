// The sources benchmark's subscriber: one WebSocket to the relay subscribed to the feeds' topic
// pattern; records, for every message, its receive time beside the item's production time (`t`)
// and serve time (`s`) carried in the data (one machine, one clock). Prints "ready" once
// subscribed; on a line "stop <from> <to>" prints one JSON report of the items produced in
// [from, to) and exits.
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { percentile } from './stats.ts';

const [url = '', pattern = 'srcbench.>'] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const arrivals: { id: string; t: number; s: number; at: number }[] = [];
let received = 0;

const ws = new WebSocket(`${url}/v1/ws`);
ws.on('open', () => ws.send(JSON.stringify({ op: 'sub', topic: pattern })));
ws.on('message', (raw) => {
  const at = now();
  const frame = JSON.parse(String(raw)) as { op?: string; data?: { id: string; t: number; s: number } };
  if (frame.op === 'subscribed') process.stdout.write('ready\n');
  if (frame.op !== 'msg' || !frame.data) return;
  received += 1;
  arrivals.push({ id: frame.data.id, t: frame.data.t, s: frame.data.s, at });
});
ws.on('error', (error) => process.stderr.write(`sources-subscriber: ${error.message}\n`));

const pct = (sorted: number[], p: number) => (sorted.length === 0 ? null : percentile(sorted, p));
createInterface({ input: process.stdin }).on('line', (line) => {
  const [word, fromText, toText] = line.split(' ');
  if (word !== 'stop') return;
  const from = Number(fromText);
  const to = Number(toText);
  const inWindow = arrivals.filter((a) => a.t >= from && a.t < to);
  const unique = new Set(inWindow.map((a) => a.id));
  const lags = inWindow.map((a) => a.at - a.t).sort((a, b) => a - b);
  const pipeline = inWindow.map((a) => a.at - a.s).sort((a, b) => a - b);
  const report = {
    received: unique.size,
    duplicates: inWindow.length - unique.size,
    total: received,
    lag: { p50: pct(lags, 50), p99: pct(lags, 99), max: lags.at(-1) ?? null },
    pipeline: { p50: pct(pipeline, 50), p99: pct(pipeline, 99) },
  };
  ws.terminate();
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
});
