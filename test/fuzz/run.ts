// The fuzz command: `npm run fuzz -- --frames N [--seed S] [--connections C] [--progress-s P]`.
//
// Throws N malformed (and some valid) WebSocket frames and HTTP publish bodies at a relay process,
// pipelined over many connections, while a well-behaved subscriber watches a topic that a
// well-behaved publisher publishes to. It checks, and prints as JSON at the end:
// - the relay never exits (0 crashes) and still answers /healthz;
// - every frame gets what PROTOCOL.md gives it: per window of frames on a connection, exactly the
//   expected `err` codes (one per malformed frame) and acks / subscribed / pongs for valid ones;
//   every HTTP body exactly its status and error code; frames over the hard cap close with 1009,
//   and a frame left unfinished closes with 4003;
// - the subscriber received every acked message, once, in order;
// - every acked message (the publisher's and the fuzzer's own valid ones) is in history.
// Exits 1 when any check fails.
import { parseArgs } from 'node:util';
import { connect } from 'node:net';
import { rm } from 'node:fs/promises';
import { CLOSE_CODES, CLOSE_MESSAGE_TOO_BIG } from '@anode/shared';
import fc from 'fast-check';
import WebSocket from 'ws';
import { expectedFor, type Expected, type FuzzCase, generateCases, MAX_FRAME, MAX_MESSAGE, SEED } from './cases.ts';
import { expectedHttp, generateBodies, type HttpCase, MAX_BODY } from './http-cases.ts';
import { history, spawnRelay, tempDir } from '../helpers/relay.ts';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '20000' },
    seed: { type: 'string', default: String(SEED) },
    connections: { type: 'string', default: '16' },
    window: { type: 'string', default: '64' },
    'progress-s': { type: 'string', default: '5' },
  },
});
const FRAMES = Number(values.frames);
const SEED_VALUE = Number(values.seed);
const CONNECTIONS = Number(values.connections);
const WINDOW = Number(values.window);
const PROGRESS_MS = Number(values['progress-s']) * 1000;
/** One in this many fuzz inputs is an HTTP body rather than a WebSocket frame. */
const HTTP_EVERY = 20;
/** Close-code cases (a frame over the hard cap, an unfinished frame): one each per this many frames. */
const CLOSE_CASE_EVERY = 50_000;
const FRAME_TIMEOUT_MS = 3_000;
const WATCH_TOPIC = 'watch.feed';
// Few topics, and resume cursors from the future: a million frames must not turn into a million
// history scans (the e2e fuzz test covers resuming from old cursors).
const FUZZ_TOPICS = ['fz.a', 'fz.b', 'fz.c.d'];

const log = (line: string) => process.stderr.write(`${line}\n`);

interface Tally {
  err: Map<string, number>;
  ack: number;
  subscribed: number;
  pong: number;
}
const emptyTally = (): Tally => ({ err: new Map(), ack: 0, subscribed: 0, pong: 0 });
const addExpected = (tally: Tally, expected: Expected) => {
  if (expected.err) tally.err.set(expected.err, (tally.err.get(expected.err) ?? 0) + 1);
  else if (expected.reply) tally[expected.reply] += 1;
};
const sameTally = (a: Tally, b: Tally) =>
  a.ack === b.ack &&
  a.subscribed === b.subscribed &&
  a.pong === b.pong &&
  a.err.size === b.err.size &&
  [...a.err].every(([code, n]) => b.err.get(code) === n);
const covered = (got: Tally, want: Tally) =>
  got.ack >= want.ack &&
  got.subscribed >= want.subscribed &&
  got.pong >= want.pong &&
  [...want.err].every(([code, n]) => (got.err.get(code) ?? 0) >= n);
const show = (t: Tally) => JSON.stringify({ ...t, err: Object.fromEntries(t.err) });

const report = {
  frames_requested: FRAMES,
  seed: SEED_VALUE,
  ws_frames: 0,
  http_bodies: 0,
  handshake_retries: 0,
  close_cases: { over_hard_cap: 0, unfinished_frame: 0 },
  distinct_cases: 0,
  errors_by_code: {} as Record<string, number>,
  mismatches: 0,
  mismatch_examples: [] as string[],
  crashes: 0,
  watcher: { published: 0, acked: 0, received: 0, missed: 0, out_of_order: false },
  history: { checked: 0, missing: 0 },
  relay_rss_mb: 0,
  seconds: 0,
  frames_per_second: 0,
  ok: false,
};
const mismatch = (text: string) => {
  report.mismatches += 1;
  if (report.mismatches <= 20) log(`MISMATCH ${text.slice(0, 600)}`);
  if (report.mismatch_examples.length < 10) report.mismatch_examples.push(text.slice(0, 400));
};
const countErr = (code: string) => (report.errors_by_code[code] = (report.errors_by_code[code] ?? 0) + 1);

// ---- the relay under test --------------------------------------------------------------------

const dataDir = await tempDir('anode-fuzz-');
const relay = await spawnRelay([
  '--port',
  '0',
  '--data-dir',
  dataDir,
  '--log-level',
  'info',
  '--max-frame-bytes',
  String(MAX_FRAME),
  '--max-message-bytes',
  String(MAX_MESSAGE),
  '--max-body-bytes',
  String(MAX_BODY),
  '--publish-rate',
  '1000000',
  '--publish-burst',
  '1000000',
  '--max-subscriptions',
  '10000',
  '--store-fsync',
  'false',
  '--retention-max-messages',
  '0',
  '--frame-timeout-ms',
  String(FRAME_TIMEOUT_MS),
]);
let crashed = false;
let stopping = false;
void relay.exited.then(({ code, signal }) => {
  if (stopping) return;
  crashed = true;
  report.crashes += 1;
  log(`RELAY EXITED (code ${code}, signal ${signal}):\n${relay.output.join('').slice(-4000)}`);
});
// `spawnRelay` prints nothing once ready; keep its output from growing without bound.
relay.child.stdout?.removeAllListeners('data');
relay.child.stdout?.resume();

// ---- cases -------------------------------------------------------------------------------------

const started = Date.now();
const future = `${(Date.now() + 10 * 365 * 86_400_000).toString(16).padStart(12, '0')}0000-fuzz`;
const wsPool: { c: FuzzCase; expected: Expected }[] = [];
const poolSize = Math.min(Math.max(2_000, FRAMES), 16_000);
for (let round = 0; wsPool.length < poolSize; round++) {
  const cases = generateCases({
    seed: SEED_VALUE + round * 1_000,
    topic: fc.constantFrom(...FUZZ_TOPICS),
    cursor: fc.constant(future),
  });
  for (const c of cases) {
    const expected = expectedFor(c);
    // A resuming `sub` answers only if no later `sub`/`unsub` of its pattern overtakes its catch-up
    // (hub.ts): a race windows of pipelined frames cannot count on. The e2e fuzz test, one frame at
    // a time, covers resuming subs.
    if (expected.reply === 'subscribed' && expected.late) continue;
    wsPool.push({ c, expected });
  }
}
const httpPool: { c: HttpCase; expected: ReturnType<typeof expectedHttp> }[] = generateBodies(SEED_VALUE).map((c) => ({
  c,
  expected: expectedHttp(c),
}));
report.distinct_cases = wsPool.length + httpPool.length;
log(
  `fuzz: ${wsPool.length} WebSocket cases and ${httpPool.length} HTTP bodies (seed ${SEED_VALUE}) ` +
    `generated in ${Date.now() - started} ms; relay at ${relay.url}`,
);

const rng = fc.sample(fc.infiniteStream(fc.nat()), { numRuns: 1, seed: SEED_VALUE })[0]?.[Symbol.iterator]();
const nextRandom = () => rng?.next().value ?? 0;
let issued = 0;
/** Take the next input index, or undefined when N inputs were issued. */
const take = () => (issued < FRAMES ? issued++ : undefined);

// ---- a well-behaved subscriber and publisher ----------------------------------------------------

/** Open a client socket; a refused handshake is tried again (counted) up to 3 times. */
async function open(url: string): Promise<WebSocket> {
  for (let attempt = 1; ; attempt++) {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    try {
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      return ws;
    } catch (error) {
      // On a machine loaded enough to stall the relay past `frame_timeout_ms`, a handshake may
      // get 408; that is the slow-handshake guard, not a fuzz finding.
      if (attempt === 3) throw error;
      report.handshake_retries += 1;
      log(`handshake failed (${(error as Error).message}); trying again`);
    }
  }
}

const watcher = await open(`${relay.wsUrl}/v1/ws`);
const received: string[] = [];
let watcherSubscribed: () => void = () => {};
const watcherReady = new Promise<void>((resolve) => (watcherSubscribed = resolve));
watcher.on('message', (raw) => {
  const frame = JSON.parse(String(raw)) as { op: string; id?: string };
  if (frame.op === 'msg' && frame.id) received.push(frame.id);
  if (frame.op === 'subscribed') watcherSubscribed();
});
watcher.send(JSON.stringify({ op: 'sub', topic: WATCH_TOPIC }));
await watcherReady;

const publisher = await open(`${relay.wsUrl}/v1/ws`);
const publisherAcks = new Map<number, string>();
publisher.on('message', (raw) => {
  const frame = JSON.parse(String(raw)) as { op: string; id?: string; ref?: string };
  if (frame.op === 'ack' && frame.ref && frame.id) publisherAcks.set(Number(frame.ref), frame.id);
  else if (frame.op === 'err') mismatch(`well-behaved publisher got ${String(raw)}`);
});
let publishing = true;
const publishLoop = (async () => {
  while (publishing && !crashed) {
    publisher.send(
      JSON.stringify({
        op: 'pub',
        topic: WATCH_TOPIC,
        data: { n: report.watcher.published },
        ref: String(report.watcher.published),
      }),
    );
    report.watcher.published += 1;
    await new Promise((r) => setTimeout(r, 5));
  }
})();

// ---- fuzz lanes ------------------------------------------------------------------------------

/** Ids the fuzzer's own valid publishes were acked with, and every topic they may be on. */
const fuzzAcks = new Set<string>();
const fuzzTopics = new Set<string>();
for (const { c, expected } of wsPool) if (expected.reply === 'ack') fuzzTopics.add(topicOf(c));
for (const { c, expected } of httpPool) if (expected.status === 202) fuzzTopics.add(c.topic);

async function wsLane(lane: number): Promise<void> {
  const ws = await open(`${relay.wsUrl}/v1/ws`);
  let got = emptyTally();
  let wake: (() => void) | undefined;
  let closed = false;
  ws.on('message', (raw: Buffer) => {
    const text = raw.toString('utf8');
    const op = /^\{"op":"([a-z]+)"/.exec(text)?.[1];
    if (op === 'msg') return;
    if (op === 'err') {
      const code = /"code":"([a-z_]+)"/.exec(text)?.[1] ?? '?';
      got.err.set(code, (got.err.get(code) ?? 0) + 1);
      countErr(code);
    } else if (op === 'ack') {
      got.ack += 1;
      const id = /"id":"([^"]+)"/.exec(text)?.[1];
      if (id) fuzzAcks.add(id);
    } else if (op === 'subscribed') got.subscribed += 1;
    else if (op === 'pong') got.pong += 1;
    wake?.();
  });
  ws.on('close', () => {
    closed = true;
    wake?.();
  });
  for (let windowNo = 0; !crashed; windowNo++) {
    const want = emptyTally();
    const sent: FuzzCase[] = [];
    got = emptyTally();
    for (let i = 0; i < WINDOW; i++) {
      const index = take();
      if (index === undefined) break;
      if (index % HTTP_EVERY === HTTP_EVERY - 1) {
        await httpOne();
        continue;
      }
      const { c, expected } = wsPool[nextRandom() % wsPool.length] as (typeof wsPool)[number];
      addExpected(want, expected);
      ws.send(c.payload, { binary: c.binary });
      sent.push(c);
      report.ws_frames += 1;
    }
    if (sent.length === 0) break;
    const barrier = `lane${lane}-w${windowNo}`;
    ws.send(JSON.stringify({ op: 'ping', ref: barrier }));
    want.pong += 1;
    // Until every expected reply is in; a reply that never comes fails the window after 60 s (long:
    // on a loaded machine an ack can take seconds, and a late reply would be blamed on the next window).
    const deadline = Date.now() + 60_000;
    while (!covered(got, want) && !closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 250);
      });
    }
    wake = undefined;
    if (closed) {
      mismatch(`lane ${lane}: the relay closed a fuzz connection (window ${windowNo})`);
      return;
    }
    if (!sameTally(got, want)) {
      const kinds = [...new Set(sent.map((c) => c.kind))].join(', ');
      mismatch(`lane ${lane} window ${windowNo} (${kinds}): expected ${show(want)}, got ${show(got)}`);
    }
  }
  ws.close();
}

function topicOf(c: FuzzCase): string {
  return (JSON.parse(c.payload.toString('utf8')) as { topic: string }).topic;
}

async function httpOne(): Promise<void> {
  const { c, expected } = httpPool[nextRandom() % httpPool.length] as (typeof httpPool)[number];
  report.http_bodies += 1;
  let status: number;
  let body: { error?: { code?: string }; messages?: { id: string }[] };
  try {
    const response = await fetch(`${relay.url}/v1/topics/${c.topic}/messages`, {
      method: 'POST',
      headers: { 'content-type': c.contentType },
      body: new Uint8Array(c.body),
    });
    status = response.status;
    body = (await response.json()) as typeof body;
  } catch (error) {
    // Not retried: a kept-alive connection the relay closed under a request (it did, ~500 ms after
    // refusing an unread body: body-limit.ts) leaves the client not knowing whether it was stored.
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    mismatch(`HTTP ${c.kind}: no answer (${(error as Error).message}: ${cause?.code} ${cause?.message})`);
    return;
  }
  const code = body.error?.code;
  if (code) countErr(code);
  if (expected.status === 202) {
    if (status !== 202) return mismatch(`HTTP ${c.kind}: expected 202, got ${status} ${JSON.stringify(body)}`);
    for (const m of body.messages ?? []) fuzzAcks.add(m.id);
  } else if (status !== expected.status || code !== expected.code) {
    mismatch(`HTTP ${c.kind}: expected ${expected.status} ${expected.code}, got ${status} ${JSON.stringify(body)}`);
  }
}

/** A frame over the hard cap: the documented answer is close code 1009, and the node stays up. */
async function overHardCap(): Promise<void> {
  const ws = await open(`${relay.wsUrl}/v1/ws`);
  const code = await new Promise<number>((resolve) => {
    ws.once('close', (c) => resolve(c));
    ws.send(Buffer.alloc(MAX_FRAME * 2 + 1024, 0x61));
  });
  report.close_cases.over_hard_cap += 1;
  if (code !== CLOSE_MESSAGE_TOO_BIG) mismatch(`a frame over the hard cap closed with ${code}, not 1009`);
}

/** A frame header promising 60 KiB, then 1 KiB of it and silence: closed with 4003. */
async function unfinishedFrame(): Promise<void> {
  const { port } = new URL(relay.url);
  const socket = connect(Number(port), '127.0.0.1');
  const key = Buffer.from('fuzz-unfinished!').toString('base64');
  socket.write(
    `GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    if (chunks.length === 1) {
      const header = Buffer.from([0x81, 0xfe, 0xf0, 0x00, 1, 2, 3, 4]); // text, masked, 61,440 bytes
      socket.write(Buffer.concat([header, Buffer.alloc(1024, 0x20)]));
    }
  });
  const startedAt = Date.now();
  await new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    socket.once('error', () => resolve());
    setTimeout(() => (socket.destroy(), resolve()), FRAME_TIMEOUT_MS * 5).unref();
  });
  report.close_cases.unfinished_frame += 1;
  const all = Buffer.concat(chunks);
  const closeAt = all.indexOf(Buffer.from([0x88]), all.indexOf('\r\n\r\n') + 4);
  const code = closeAt >= 0 ? all.readUInt16BE(closeAt + 2) : undefined;
  if (code !== CLOSE_CODES.frame_timeout) {
    mismatch(`an unfinished frame was not closed with 4003 (got ${code}, after ${Date.now() - startedAt} ms)`);
  }
}

// ---- run -----------------------------------------------------------------------------------------

const progress = setInterval(() => {
  const s = (Date.now() - started) / 1000;
  log(
    `fuzz: ${issued}/${FRAMES} inputs (${report.ws_frames} frames, ${report.http_bodies} bodies) in ${s.toFixed(0)} s, ` +
      `${Math.round(issued / s)}/s, ${report.mismatches} mismatches, watcher ${received.length}/${report.watcher.published}`,
  );
}, PROGRESS_MS);

const closeCases = Math.max(1, Math.floor(FRAMES / CLOSE_CASE_EVERY));
const closeLane = (async () => {
  for (let i = 0; i < closeCases && !crashed; i++) {
    await overHardCap();
    await unfinishedFrame();
    // Spread over the run.
    while (!crashed && issued < ((i + 1) * FRAMES) / (closeCases + 1)) await new Promise((r) => setTimeout(r, 200));
  }
})();
const fuzzStart = Date.now();
await Promise.all([...Array.from({ length: CONNECTIONS }, (_, lane) => wsLane(lane)), closeLane]);
const fuzzSeconds = (Date.now() - fuzzStart) / 1000;
publishing = false;
await publishLoop;
clearInterval(progress);

// ---- the checks after the storm ----------------------------------------------------------------

const settle = Date.now() + 20_000;
while (publisherAcks.size < report.watcher.published && Date.now() < settle && !crashed) {
  await new Promise((r) => setTimeout(r, 100));
}
const acked = [...publisherAcks.entries()].sort(([a], [b]) => a - b).map(([, id]) => id);
report.watcher.acked = acked.length;
if (acked.length !== report.watcher.published)
  mismatch(`${report.watcher.published - acked.length} publishes never acked`);
while (received.length < acked.length && Date.now() < settle && !crashed) await new Promise((r) => setTimeout(r, 100));
report.watcher.received = received.length;
const receivedSet = new Set(received);
report.watcher.missed = acked.filter((id) => !receivedSet.has(id)).length;
report.watcher.out_of_order = received.join() !== acked.join();
if (report.watcher.missed > 0 || report.watcher.out_of_order)
  mismatch('the watcher missed messages or got them out of order');

if (!crashed) {
  const healthy = await fetch(`${relay.url}/healthz`).then(
    (r) => r.status === 200,
    () => false,
  );
  if (!healthy) mismatch('/healthz is not 200 after the run');
  const stored = new Set<string>();
  for (const topic of [WATCH_TOPIC, ...fuzzTopics]) for (const m of await history(relay.url, topic)) stored.add(m.id);
  for (const id of [...acked, ...fuzzAcks]) {
    report.history.checked += 1;
    if (!stored.has(id)) report.history.missing += 1;
  }
  if (report.history.missing > 0) mismatch(`${report.history.missing} acked messages are not in history`);
  const pid = relay.child.pid;
  try {
    const status = await import('node:fs/promises').then((fs) => fs.readFile(`/proc/${pid}/status`, 'utf8'));
    report.relay_rss_mb = Math.round(Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
  } catch {
    // not Linux: no peak RSS figure
  }
}

report.seconds = Math.round(fuzzSeconds);
report.frames_per_second = Math.round((report.ws_frames + report.http_bodies) / fuzzSeconds);
report.ok = report.crashes === 0 && report.mismatches === 0 && report.ws_frames + report.http_bodies === FRAMES;
watcher.close();
publisher.close();
if (!crashed) {
  stopping = true;
  relay.child.kill('SIGTERM');
  await relay.exited;
}
await rm(dataDir, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exit(report.ok ? 0 : 1);
