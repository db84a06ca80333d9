// A load-generator process: opens `count` subscriber sockets (at most OPENING handshakes at a
// time, so 10,000+ sockets do not overflow the server's accept queue) and counts the messages of
// the current phase, recording the latency (now − the publish time carried in the payload; one
// machine, one clock) on an evenly spread sample of its sockets. Prints "ready" once every socket
// is open (and, for aNode, subscribed).
//
// Commands, one per line on stdin:
//   phase N   start counting phase N from zero (answers "phase N"); messages of other phases are
//             ignored, so a late tail of one step cannot count towards the next
//   report    print the current phase's JSON summary (received, latencies, cpuMs, wallMs, open)
//   stop      print the summary and exit
import { createInterface } from 'node:readline';
import type { Socket } from 'node:net';
import WebSocket from 'ws';

const [url = '', countText = '1', mode = 'anode', topic = 'bench.t', localAddress] = process.argv.slice(2);
const count = Number(countText);
const OPENING = 100; // per process; a few processes stay under the server's accept backlog (511)
const SAMPLED = 50; // latency from ~50 sockets per process keeps reports small at 10,000
const stride = Math.max(1, Math.floor(count / SAMPLED));
const now = () => performance.timeOrigin + performance.now();

let phase = 0;
let marker = Buffer.from('"p":0,');
let latencies: number[] = [];
let received = 0;
let cpuStart = process.cpuUsage();
let wallStart = performance.now();
let ready = 0; // sockets open (raw) or subscribed (aNode)
let closed = 0;
const sockets: WebSocket[] = [];
const tcp: Socket[] = [];

function onReady(): void {
  if (++ready === count) process.stdout.write('ready\n');
}

function open(i: number): void {
  const ws = new WebSocket(mode === 'anode' ? `${url}/v1/ws` : url, {
    perMessageDeflate: false,
    ...(localAddress ? { localAddress } : {}),
  });
  sockets.push(ws);
  const sampled = i % stride === 0;
  let live = mode !== 'anode';
  let started = false;
  const next = () => {
    if (started) return;
    started = true;
    if (sockets.length < count) open(sockets.length);
  };
  ws.on('upgrade', (response) => tcp.push(response.socket));
  ws.on('open', () => {
    if (mode === 'anode') ws.send(JSON.stringify({ op: 'sub', topic }));
    else {
      next();
      onReady();
    }
  });
  ws.on('message', (raw: Buffer) => {
    if (!live) {
      // aNode, before the subscription is live: wait for `subscribed`.
      const frame = JSON.parse(String(raw)) as { op?: string };
      if (frame.op !== 'subscribed') return;
      live = true;
      next();
      onReady();
      return;
    }
    // A message of the current phase carries `"p":N,` (the data is {t, seq, p, payload}); only
    // the sampled sockets pay for a full parse.
    if (!raw.includes(marker)) return;
    received += 1;
    if (!sampled) return;
    const frame = JSON.parse(String(raw)) as { data?: { t: number }; t?: number };
    const sent = mode === 'anode' ? frame.data?.t : frame.t;
    if (typeof sent === 'number') latencies.push(Math.round((now() - sent) * 1000) / 1000);
  });
  ws.on('close', () => {
    closed += 1;
    next();
  });
  ws.on('error', (error) => {
    if (!started) process.stderr.write(`subscriber-worker: socket ${i}: ${error.message}\n`);
  });
}

for (let i = 0; i < Math.min(OPENING, count); i++) open(i);

const summary = () => {
  const cpu = process.cpuUsage(cpuStart);
  return JSON.stringify({
    phase,
    received,
    latencies,
    cpuMs: (cpu.user + cpu.system) / 1000,
    wallMs: performance.now() - wallStart,
    open: ready - closed,
  });
};

createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, arg] = line.split(' ');
  if (command === 'phase') {
    phase = Number(arg);
    marker = Buffer.from(`"p":${phase},`);
    latencies = [];
    received = 0;
    cpuStart = process.cpuUsage();
    wallStart = performance.now();
    process.stdout.write(`phase ${phase}\n`);
  } else if (command === 'report') {
    process.stdout.write(`${summary()}\n`);
  } else if (command === 'stop') {
    const report = summary();
    // Reset rather than close: no TIME_WAIT left on this source address for the next run's ports.
    for (const socket of tcp) socket.resetAndDestroy();
    for (const ws of sockets) ws.terminate();
    // Exit only once the report is flushed: process.exit would cut a large write to a pipe short.
    process.stdout.write(`${report}\n`, () => process.exit(0));
  }
});
