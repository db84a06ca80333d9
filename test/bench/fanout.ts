// Scenario 1, fan-out: one publisher, N subscribers on one server, 100-byte payloads at a steady
// open-loop rate; the same clients and load against aNode's relay and the bare-ws baseline.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { percentile, processCpuMs, processRssBytes } from './stats.ts';

export interface FanoutOptions {
  subscribers: number;
  rate: number; // messages per second
  seconds: number;
  workers: number; // load-generator processes
}

export interface FanoutResult {
  target: 'anode' | 'ws-baseline';
  subscribers: number;
  rate: number;
  delivered_per_s: number;
  p50_ms: number;
  p99_ms: number;
  p999_ms: number;
  reach: number;
  server_cpu_us_per_delivery: number;
  rss_per_connection_kb: number;
  loadgen_cpu_ms: number;
}

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const CLI = here('../../relay-node/bin/anode.ts');

async function startServer(
  target: FanoutResult['target'],
  dataDir: string,
): Promise<{ child: ChildProcess; url: string }> {
  const child =
    target === 'anode'
      ? spawn(
          process.execPath,
          [
            CLI,
            'relay',
            '--port',
            '0',
            '--data-dir',
            dataDir,
            '--log-level',
            'info',
            '--publish-rate',
            '1000000',
            '--publish-burst',
            '1000000',
            '--store-fsync',
            'false',
          ],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        )
      : spawn(process.execPath, [here('./baseline-server.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk;
      const match = /(?:relay|baseline) ready at ((?:http|ws):\/\/[^"\s]+)/.exec(output);
      if (match?.[1]) resolve(match[1].replace(/^http/, 'ws'));
    });
    child.once('exit', (code) => reject(new Error(`${target} exited ${code}: ${output}`)));
  });
  return { child, url };
}

function startWorker(url: string, count: number, target: FanoutResult['target'], index: number) {
  // Spread sockets over 127.0.0.x source addresses so 10,000+ connections do not run out of ports.
  const localAddress = `127.0.0.${2 + (index % 200)}`;
  const child = spawn(
    process.execPath,
    [here('./subscriber-worker.ts'), url, String(count), target === 'anode' ? 'anode' : 'raw', 'bench.t', localAddress],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  let buffer = '';
  const lines: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk;
    let newline = buffer.indexOf('\n');
    while (newline >= 0) {
      lines.push(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf('\n');
    }
  });
  const waitLine = async (predicate: (line: string) => boolean, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = lines.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) throw new Error('load-generator worker timed out');
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { child, waitLine };
}

export async function runFanout(target: FanoutResult['target'], options: FanoutOptions): Promise<FanoutResult> {
  const dataDir = await mkdtemp(join(tmpdir(), 'anode-bench-'));
  const server = await startServer(target, dataDir);
  const pid = server.child.pid as number;
  try {
    const rssBefore = await processRssBytes(pid);
    const perWorker = Math.ceil(options.subscribers / options.workers);
    const workers = Array.from({ length: options.workers }, (_, i) =>
      startWorker(server.url, Math.min(perWorker, options.subscribers - i * perWorker), target, i),
    );
    await Promise.all(workers.map((w) => w.waitLine((l) => l === 'ready')));
    const rssAfter = await processRssBytes(pid);

    const publisher = new WebSocket(target === 'anode' ? `${server.url}/v1/ws` : server.url);
    await once(publisher, 'open');
    const payload = 'x'.repeat(60); // with the timestamp and sequence: about 100 bytes of data
    const total = Math.round(options.rate * options.seconds);
    const cpuBefore = await processCpuMs(pid);
    const started = performance.now();
    for (let seq = 0; seq < total; seq++) {
      // Open loop: each message has its due time; a late generator does not slow the schedule.
      const due = started + (seq * 1000) / options.rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const data = { t: performance.timeOrigin + performance.now(), seq, payload };
      publisher.send(JSON.stringify(target === 'anode' ? { op: 'pub', topic: 'bench.t', data } : data));
    }
    await new Promise((r) => setTimeout(r, 1_000)); // let the tail drain
    const elapsed = (performance.now() - started) / 1000;
    const cpuMs = (await processCpuMs(pid)) - cpuBefore;
    for (const w of workers) w.child.stdin?.write('stop\n');
    const reports = await Promise.all(
      workers.map(
        async (w) =>
          JSON.parse(await w.waitLine((l) => l.startsWith('{'))) as {
            received: number;
            latencies: number[];
            cpuMs: number;
          },
      ),
    );
    publisher.close();
    const received = reports.reduce((n, r) => n + r.received, 0);
    const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
    return {
      target,
      subscribers: options.subscribers,
      rate: options.rate,
      delivered_per_s: Math.round(received / elapsed),
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      p999_ms: percentile(latencies, 99.9),
      reach: received / (total * options.subscribers),
      server_cpu_us_per_delivery: received > 0 ? (cpuMs * 1000) / received : Number.NaN,
      rss_per_connection_kb: (rssAfter - rssBefore) / 1024 / options.subscribers,
      loadgen_cpu_ms: reports.reduce((n, r) => n + r.cpuMs, 0),
    };
  } finally {
    server.child.kill('SIGTERM');
    await once(server.child, 'exit').catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
  }
}
