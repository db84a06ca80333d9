import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { spawnRelay, tempDir } from '../helpers/relay.ts';

/** A loopback port nothing listens on: Cassandra away, so the relay spools. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('a damaged spool file', () => {
  it('stops the start naming the file and what to do, and the relay starts once it is moved aside', async () => {
    const dataDir = await tempDir('anode-spool-damaged-');
    const file = join(dataDir, 'spool', 'spool.sqlite');
    await mkdir(join(dataDir, 'spool'), { recursive: true, mode: 0o700 });
    await writeFile(file, randomBytes(8192), { mode: 0o600 });
    const args = ['--port', '0', '--data-dir', dataDir, '--store', 'cassandra'];
    args.push('--cassandra-contact-points', `127.0.0.1:${await closedPort()}`);

    await assert.rejects(spawnRelay(args), (error: Error) => {
      assert.ok(error.message.includes(`${file}: file is not a database`), error.message);
      assert.match(error.message, /spool file is damaged: stop the relay and move it aside/);
      return true;
    });

    await rename(file, `${file}.damaged`);
    const relay = await spawnRelay(args);
    relay.child.kill('SIGTERM');
    assert.equal((await relay.exited).code, 0);
  });
});
