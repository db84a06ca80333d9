import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { spawnRelay } from '../helpers/relay.ts';

/**
 * A relay on Cassandra, with Cassandra away (the driver meets a loopback port nothing listens on),
 * spooling into a data folder on a small tmpfs (root on Linux only, as sqlite-full-disk.test.ts).
 */
const unavailable = process.platform !== 'linux' || process.getuid?.() !== 0 ? 'needs root on Linux' : undefined;

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const publish = async (url: string, data: string) => {
  const res = await fetch(`${url}/v1/topics/spool.full/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ data }),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
};

describe('the spool on a full disk', { skip: unavailable }, () => {
  it('refuses publishes with unavailable and reports not healthy, then takes them once space returns', async () => {
    const mnt = mkdtempSync(join(tmpdir(), 'anode-spool-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt]);
    let relay: Awaited<ReturnType<typeof spawnRelay>> | undefined;
    try {
      relay = await spawnRelay([
        ...['--port', '0', '--data-dir', join(mnt, 'data'), '--store', 'cassandra'],
        ...['--cassandra-contact-points', `127.0.0.1:${await closedPort()}`],
        ...['--publish-rate', '100000', '--publish-burst', '100000', '--spool-max-bytes', '1000000000'],
      ]);
      const { url } = relay;
      assert.equal((await fetch(`${url}/healthz`)).status, 200, 'healthy while spooling');
      const big = 'x'.repeat(16_000);
      let refused: Awaited<ReturnType<typeof publish>> | undefined;
      for (let i = 0; i < 2_000 && !refused; i++) {
        const answer = await publish(url, big);
        if (answer.status >= 300) refused = answer;
      }
      assert.ok(refused, 'the disk filled');
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error?.code, 'unavailable');

      // Publishes are refused: the relay says so, so a load balancer sends them elsewhere.
      assert.equal((await fetch(`${url}/healthz`)).status, 503, '/healthz while the spool refuses writes');
      const status = (await (await fetch(`${url}/v1/status`)).json()) as { store: { ok: boolean; detail?: string } };
      assert.equal(status.store.ok, false);
      assert.match(status.store.detail ?? '', /spool could not take the last write: database or disk is full/);

      execFileSync('mount', ['-o', 'remount,size=24m', mnt]);
      let taken = false;
      for (const started = Date.now(); !taken && Date.now() - started < 15_000; await sleep(100)) {
        taken = (await publish(url, 'after')).status === 202;
      }
      assert.ok(taken, 'publishes are taken once space returns');
      assert.equal((await fetch(`${url}/healthz`)).status, 200, 'healthy again');
    } finally {
      if (relay) {
        relay.child.kill('SIGTERM');
        await relay.exited;
      }
      execFileSync('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });
});
