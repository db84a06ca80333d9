import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { after, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { EXIT_CODES } from '@anode/relay-node/src/exit-codes.ts';
import { spawnRelay, tempDir } from '../helpers/relay.ts';
import { ANODE_CLI } from '../helpers/netns.ts';

/**
 * A relay process must never linger: not half-started after a failed bind, not after the
 * supervisor that read its output was killed, not in a final log flush to a reader that stopped
 * reading. Real processes throughout; every wait is bounded (generous: the machine is shared).
 */
const PROMPT_MS = 30_000;
/** Booting a relay (TypeScript, libp2p) takes over a minute when the machine is saturated. */
const BOOT_MS = 120_000;

const busyPort = async (): Promise<{ server: Server; port: number }> => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
};

const exitOf = (child: ChildProcess, timeoutMs = BOOT_MS) =>
  new Promise<{ code: number | null; signal: string | null; ms: number }>((resolve, reject) => {
    const started = Date.now();
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`still running after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, ms: Date.now() - started });
    });
  });

/** Gone, or a zombie nobody reaps (a container's init may not): either way it has exited. */
const hasExited = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
};

describe('relay exit: a relay that cannot run exits promptly with a clear code', () => {
  const dirs: string[] = [];
  const data = async () => {
    const dir = await tempDir('anode-exit-');
    dirs.push(dir);
    return dir;
  };
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  it('exits with start_failed when its mesh listen port is taken (it used to hang half-started)', async () => {
    const { server, port } = await busyPort();
    try {
      const child = spawn(
        process.execPath,
        [ANODE_CLI, 'relay', '--port', '0', '--data-dir', await data(), '--listen', `/ip4/127.0.0.1/tcp/${port}`],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      let failedAt = 0;
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        failedAt ||= /EADDRINUSE|in use/.test(stderr) ? Date.now() : 0;
      });
      child.stdout?.resume();
      const exit = await exitOf(child);
      assert.equal(exit.code, EXIT_CODES.start_failed, stderr);
      assert.match(stderr, /could not start.*EADDRINUSE|could not start[\s\S]*in use/);
      assert.ok(Date.now() - failedAt < PROMPT_MS, 'exited promptly once the start had failed');
    } finally {
      server.close();
    }
  });

  it('exits with start_failed when its HTTP port is taken', async () => {
    const { server, port } = await busyPort();
    try {
      const child = spawn(
        process.execPath,
        [ANODE_CLI, 'relay', '--port', String(port), '--data-dir', await data(), '--mesh', 'true'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stdout?.resume();
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      assert.equal((await exitOf(child)).code, EXIT_CODES.start_failed, stderr);
    } finally {
      server.close();
    }
  });

  it('exits with start_failed when another relay holds its data folder; the first keeps serving', async () => {
    const dir = await data();
    const first = await spawnRelay(['--port', '0', '--data-dir', dir]);
    try {
      const child = spawn(process.execPath, [ANODE_CLI, 'relay', '--port', '0', '--data-dir', dir], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.resume();
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      assert.equal((await exitOf(child)).code, EXIT_CODES.start_failed, stderr);
      assert.match(stderr, /data folder .* is in use by another relay.*--data-dir/);
      const res = await fetch(`${first.url}/v1/topics/lock/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: 1 }),
      });
      assert.equal(res.status, 202, 'the first relay still takes publishes');
    } finally {
      first.child.kill('SIGKILL');
      await first.exited;
    }
    // SIGKILLed, the first relay left no stale lock: the folder starts a relay again.
    const again = await spawnRelay(['--port', '0', '--data-dir', dir]);
    again.child.kill('SIGTERM');
    assert.equal((await again.exited).code, EXIT_CODES.ok);
  });

  it('exits with output_lost when its standard output has no reader', async () => {
    const child = spawn(process.execPath, [ANODE_CLI, 'relay', '--port', '0', '--data-dir', await data()], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    child.stdout?.destroy(); // the reader goes away before the relay's first log line
    assert.equal((await exitOf(child)).code, EXIT_CODES.output_lost);
  });

  it('exits once the supervisor that read its output is SIGKILLed', async () => {
    // The supervisor pipes the relay's stdout to itself, reports the relay's pid once it is
    // ready, and is then killed: nobody reads that pipe any more.
    const supervisorCode = `
      const { spawn } = require('node:child_process');
      const relay = spawn(process.execPath, process.argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
      let seen = '';
      relay.stdout.on('data', (chunk) => {
        seen += chunk;
        if (/relay ready at/.test(seen)) { process.stdout.write(relay.pid + '\\n'); seen = ''; }
      });`;
    const supervisor = spawn(
      process.execPath,
      ['-e', supervisorCode, ANODE_CLI, 'relay', '--port', '0', '--data-dir', await data()],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const pid = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('relay under supervisor did not start')), BOOT_MS);
      supervisor.stdout?.once('data', (chunk: Buffer) => {
        clearTimeout(timer);
        resolve(Number(chunk.toString().trim()));
      });
    });
    assert.ok(pid > 0 && !hasExited(pid));
    supervisor.kill('SIGKILL');
    const deadline = Date.now() + PROMPT_MS;
    while (!hasExited(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const gone = hasExited(pid);
    if (!gone) process.kill(pid, 'SIGKILL');
    assert.ok(gone, `relay ${pid} still running ${PROMPT_MS} ms after its supervisor died`);
  });

  it('exits within its grace time on SIGTERM even when its output reader has stopped reading', async () => {
    const relay = await spawnRelay(['--port', '0', '--data-dir', await data(), '--log-level', 'debug']);
    // Stop reading: the pipe fills up with debug lines, and the exit-time flush must not wait
    // for it forever (it used to spin in Atomics.wait).
    relay.child.stdout?.pause();
    relay.child.stdout?.removeAllListeners('data');
    for (let i = 0; i < 200; i++) void fetch(`${relay.url}/v1/topics/exit.t/messages?limit=1`).catch(() => {});
    await new Promise((r) => setTimeout(r, 1_000));
    relay.child.kill('SIGTERM');
    const exit = await Promise.race([
      relay.exited,
      new Promise<undefined>((r) => setTimeout(r, PROMPT_MS)).then(() => undefined),
    ]);
    if (!exit) relay.child.kill('SIGKILL');
    assert.ok(exit, 'exited');
    assert.ok(exit.code === EXIT_CODES.ok || exit.code === EXIT_CODES.failed, `code ${exit.code}`);
  });
});

describe('relay exit: what a stopping relay logs about its clients', () => {
  it('logs one line for all the connections it closes, not one per connection', async () => {
    const relay = await spawnRelay(['--port', '0', '--data-dir', await tempDir(), '--log-level', 'info']);
    const sockets = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const socket = new WebSocket(`${relay.wsUrl}/v1/ws`);
            socket.once('open', () => resolve(socket));
            socket.once('error', reject);
          }),
      ),
    );
    const closes = sockets.map((socket) => new Promise<number>((resolve) => socket.once('close', resolve)));
    relay.child.kill('SIGTERM');
    assert.deepEqual(new Set(await Promise.all(closes)), new Set([4000]), 'every client got the shutdown code');
    await relay.exited;
    const lines = relay.output.join('').split('\n');
    const summary = lines.filter((line) => line.includes('closing every client connection'));
    assert.equal(summary.length, 1, summary.join('\n'));
    assert.match(summary[0] ?? '', /"connections":20/);
    assert.equal(lines.filter((line) => line.includes('"closing connection"')).length, 0);
  });
});
