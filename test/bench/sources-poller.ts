// The sources benchmark's baseline: a bare poller process with the relay's polling shape and
// nothing else. The same `count` endpoints, the same interval, the same concurrency limit and
// timeout, first polls spread over the interval, fixed-rate schedule (next due = due + interval),
// the same conditional request (If-None-Match) — then plain fetch + JSON.parse, and a new item
// is "ingested" the moment its JSON is parsed (no extraction, dedup window, store or fan-out).
// Prints "ready"; on a line "stop <from> <to>" on stdin prints one JSON report of the items
// produced in [from, to) and exits.
import { createInterface } from 'node:readline';
import { percentile } from './stats.ts';

const [base = '', countText = '1', intervalText = '1000', concurrencyText = '256', timeoutText = '10000'] =
  process.argv.slice(2);
const count = Number(countText);
const interval = Number(intervalText);
const concurrency = Number(concurrencyText);
const timeout = Number(timeoutText);
const now = () => performance.timeOrigin + performance.now();

interface Item {
  id: string;
  t: number;
  s: number;
  v: number;
}
/** Per feed: newest item number seen, ETag, how late its last poll started, failures in a row. */
const feeds = Array.from({ length: count }, () => ({ newest: -1, etag: '', lagMs: 0, failures: 0 }));
const arrivals: { t: number; s: number; at: number }[] = [];
let errors = 0;

// A counting semaphore: `concurrency` polls in flight, the rest wait in arrival order.
let free = concurrency;
const waiting: (() => void)[] = [];
let head = 0;
const acquire = (): Promise<void> => {
  if (free > 0) {
    free -= 1;
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => waiting.push(resolve));
};
const release = () => {
  const next = waiting[head];
  if (!next) {
    free += 1;
    return;
  }
  waiting[head++] = undefined as unknown as () => void;
  if (head > 1024 && head * 2 > waiting.length) {
    waiting.splice(0, head);
    head = 0;
  }
  next();
};

const poll = async (i: number, due: number) => {
  await acquire();
  const feed = feeds[i] as (typeof feeds)[number];
  feed.lagMs = Math.max(0, Date.now() - due);
  try {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (feed.etag) headers['if-none-match'] = feed.etag;
    const response = await fetch(`${base}/f/${i}`, { headers, signal: AbortSignal.timeout(timeout) });
    if (response.status !== 304) {
      const text = await response.text();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const payload = JSON.parse(text) as { items: Item[] };
      const at = now();
      for (const item of payload.items) {
        if (item.v <= feed.newest) continue;
        feed.newest = item.v;
        arrivals.push({ t: item.t, s: item.s, at });
      }
      feed.etag = response.headers.get('etag') ?? '';
    } else await response.body?.cancel();
    feed.failures = 0;
  } catch {
    errors += 1;
    feed.failures += 1;
  } finally {
    release();
  }
  const next = Math.max(due + interval, Date.now());
  setTimeout(() => void poll(i, next), next - Date.now());
};

const started = Date.now();
for (let i = 0; i < count; i++) {
  const due = started + Math.random() * Math.min(interval, 10_000);
  setTimeout(() => void poll(i, due), due - started);
}
process.stdout.write('ready\n');

const pct = (sorted: number[], p: number) => (sorted.length === 0 ? null : percentile(sorted, p));
createInterface({ input: process.stdin }).on('line', (line) => {
  const [word, fromText, toText] = line.split(' ');
  if (word !== 'stop') return;
  const from = Number(fromText);
  const to = Number(toText);
  const inWindow = arrivals.filter((a) => a.t >= from && a.t < to);
  const lags = inWindow.map((a) => a.at - a.t).sort((a, b) => a - b);
  const pipeline = inWindow.map((a) => a.at - a.s).sort((a, b) => a - b);
  const pollLags = feeds.map((f) => f.lagMs).sort((a, b) => a - b);
  const report = {
    received: inWindow.length,
    duplicates: 0, // one newest-number per feed: nothing is counted twice
    lag: { p50: pct(lags, 50), p99: pct(lags, 99), max: lags.at(-1) ?? null },
    pipeline: { p50: pct(pipeline, 50), p99: pct(pipeline, 99) },
    pollLag: { p50: pct(pollLags, 50), p99: pct(pollLags, 99), max: pollLags.at(-1) ?? null },
    maxFailures: Math.max(0, ...feeds.map((f) => f.failures)),
    failing: feeds.filter((f) => f.failures > 0).length,
    errors,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
});
