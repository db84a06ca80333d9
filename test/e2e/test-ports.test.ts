import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { freePort, startEdge } from '../helpers/edge.ts';

// The ports tests pin before a server takes them. A fresh-clone CI run lost a test to
// EADDRINUSE: freePort() handed out a port the kernel had picked (listen(0)), from its ephemeral
// range, and in the moment before the edge bound it the kernel handed it again to a connection of
// a test running alongside.

const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

const close = (server: Server) => new Promise((resolve) => server.close(resolve));

/** Servers still open, counted once the ones just closed are gone (a handle goes a moment after its close callback). */
async function openServers(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 200));
  return process.getActiveResourcesInfo().filter((kind) => kind === 'TCPServerWrap').length;
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

describe('test ports', () => {
  it('are free and outside the range the kernel hands out on its own', async () => {
    const ports = new Set<number>();
    for (let i = 0; i < 50; i++) {
      const port = await freePort();
      assert.ok(port >= 10_000 && port < ephemeralLow, `port ${port} is below ${ephemeralLow}`);
      ports.add(port);
    }
    assert.ok(ports.size > 40, `picked at random: ${ports.size} distinct ports in 50`);
    const server = await listen(await freePort());
    await close(server);
  });

  it('are never one a server holds', async () => {
    // Hold most of a small range and ask again and again: every answer must bind.
    const held: Server[] = [];
    try {
      for (let i = 0; i < 20; i++) held.push(await listen(await freePort()));
      for (let i = 0; i < 20; i++) {
        const server = await listen(await freePort());
        held.push(server);
      }
      assert.equal(new Set(held.map((s) => (s.address() as { port: number }).port)).size, 40);
    } finally {
      await Promise.all(held.map(close));
    }
  });

  it('an edge that cannot take its pinned port fails loudly and leaves nothing open', async () => {
    const holder = await listen(await freePort());
    const { port } = holder.address() as { port: number };
    const before = await openServers();
    try {
      await assert.rejects(startEdge({ EDGE_URL: `http://127.0.0.1:${port}` }), { code: 'ERR_ADDRESS_IN_USE' });
      const after = await openServers();
      assert.equal(after, before, 'the failed start closed its servers');
    } finally {
      await close(holder);
    }
  });
});
