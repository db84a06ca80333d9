import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { EXIT_CODES } from './exit-codes.ts';

/**
 * Listen addresses the relay cannot use, as a user gives them: a real `anode relay` process each
 * time. No packet leaves the machine: 192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface, so
 * binding it fails at once.
 */
const CLI = fileURLToPath(new URL('../bin/anode.ts', import.meta.url));

function anode(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ANODE_JWT_SECRET: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('anode relay: listen addresses it cannot use, in one line', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const relay = async (...args: string[]) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-cli-addr-'));
    dirs.push(dir);
    return anode(['relay', '--port', '0', '--data-dir', dir, ...args]);
  };
  const oneLine = (stderr: string) => {
    assert.equal(stderr.trimEnd().split('\n').length, 1, `one line: ${stderr}`);
    assert.doesNotMatch(stderr, /\n\s+at |faultTolerance/);
  };

  it('refuses a --listen address no mesh transport takes before starting (exit 2), naming it and the forms taken', async () => {
    const run = await relay('--listen', '/ip4/127.0.0.1/udp/5');
    assert.equal(run.code, EXIT_CODES.usage, run.stderr);
    oneLine(run.stderr);
    assert.match(
      run.stderr,
      /invalid config: listen: \/ip4\/127\.0\.0\.1\/udp\/5 \(from --listen\): .*\/tcp\/.*\/ws.*\/p2p-circuit.*\/webrtc/,
    );
    assert.equal(run.stdout, '', 'nothing started, nothing logged');
  });

  it('refuses a --host that is no address (999.1.1.1) before starting (exit 2), naming the option', async () => {
    const run = await relay('--host', '999.1.1.1');
    assert.equal(run.code, EXIT_CODES.usage, run.stderr);
    oneLine(run.stderr);
    assert.match(run.stderr, /invalid config: host: 999\.1\.1\.1 is neither an IP address nor a host name .*--host/);
  });

  it('says in one line which host could not be listened on and why (exit 3), naming every place it is set', async () => {
    const run = await relay('--host', '192.0.2.1');
    assert.equal(run.code, EXIT_CODES.start_failed, run.stderr);
    oneLine(run.stderr);
    assert.match(
      run.stderr,
      /could not start: host 192\.0\.2\.1 \(--host, ANODE_HOST or host in the config file\): .*EADDRNOTAVAIL/,
    );
  });

  it('says in one line which mesh address could not be listened on and why (exit 3), not libp2p’s paragraph', async () => {
    const run = await relay('--listen', '/ip4/192.0.2.1/tcp/0');
    assert.equal(run.code, EXIT_CODES.start_failed, run.stderr);
    oneLine(run.stderr);
    assert.match(
      run.stderr,
      /could not start: the mesh could not listen on \/ip4\/192\.0\.2\.1\/tcp\/0 \(.*EADDRNOTAVAIL.*\): check listen \(--listen, ANODE_LISTEN or listen in the config file\)/,
    );
  });
});
