// A load-generator process: opens `count` subscriber sockets and records the latency of every
// message (now − the publish time carried in the payload; one machine, one clock). Reports a
// JSON summary on stdout when told to stop (a line "stop" on stdin).
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

const [url = '', countText = '1', mode = 'anode', topic = 'bench.t', localAddress] = process.argv.slice(2);
const count = Number(countText);
const latencies: number[] = [];
let received = 0;
let open = 0;
const sockets: WebSocket[] = [];
const now = () => performance.timeOrigin + performance.now();

for (let i = 0; i < count; i++) {
  const ws = new WebSocket(mode === 'anode' ? `${url}/v1/ws` : url, localAddress ? { localAddress } : {});
  sockets.push(ws);
  ws.on('open', () => {
    if (mode === 'anode') ws.send(JSON.stringify({ op: 'sub', topic }));
    else if (++open === count) process.stdout.write('ready\n');
  });
  const sampled = i < 50; // latency from a sample of sockets keeps the report small at 10,000
  ws.on('message', (raw) => {
    const frame = JSON.parse(String(raw)) as { op?: string; data?: { t: number }; t?: number };
    if (mode === 'anode') {
      if (frame.op === 'subscribed' && ++open === count) process.stdout.write('ready\n');
      if (frame.op !== 'msg') return;
    }
    const sent = mode === 'anode' ? frame.data?.t : frame.t;
    if (typeof sent === 'number') {
      received += 1;
      if (sampled) latencies.push(now() - sent);
    }
  });
  ws.on('error', () => {});
}

const cpuStart = process.cpuUsage();
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line !== 'stop') return;
  const cpu = process.cpuUsage(cpuStart);
  for (const ws of sockets) ws.terminate();
  // Exit only once the report is flushed: process.exit would cut a large write to a pipe short.
  process.stdout.write(`${JSON.stringify({ received, latencies, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`, () =>
    process.exit(0),
  );
});
