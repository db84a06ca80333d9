import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { freePort, LINK_SECRET, startEdge } from '../helpers/edge.ts';
import { history, spawnRelay, tempDir } from '../helpers/relay.ts';

/**
 * Issue 12 item 6: the Worker on workerd (miniflare) and a real relay process. Whoever can reach
 * the edge may set any Host header; neither the edge nor the relay may let that choose where the
 * relay dials and presents the link secret.
 */

/** A host an attacker controls: records every connection and the credentials it was shown. */
async function attackerHost() {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const seen: string[] = [];
  wss.on('connection', (_ws, req) => seen.push(req.headers.authorization ?? '(none)'));
  wss.on('headers', (_headers, req) => seen.push(`upgrade ${req.url}`));
  const { port } = wss.address() as AddressInfo;
  return { host: `127.0.0.1:${port}`, seen, close: () => wss.close() };
}

/** Publish at the edge with a forged Host header. */
function publishWithHost(edgeUrl: string, host: string, topic: string, data: unknown): Promise<number> {
  const url = new URL(`${edgeUrl}/v1/topics/${topic}/messages`);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: { host, 'content-type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.once('error', reject);
    req.end(JSON.stringify({ data }));
  });
}

async function startPair(options: { edgeUrlOnEdge: boolean; edgeUrlOnRelay: boolean }) {
  const dataDir = await tempDir('anode-edge-origin-');
  const edgeOrigin = `http://127.0.0.1:${await freePort()}`;
  const relay = await spawnRelay(['--port', '0', '--data-dir', dataDir, '--log-level', 'info'], {
    ANODE_EDGE_LINK_SECRET: LINK_SECRET,
    ...(options.edgeUrlOnRelay ? { ANODE_EDGE_URL: edgeOrigin } : {}),
  });
  const edge = await startEdge({
    RELAY_URLS: relay.url,
    LINK_SECRET,
    LINK_WAIT_MS: '1000',
    LINK_RETRY_MAX_MS: '400',
    EDGE_URL: options.edgeUrlOnEdge ? edgeOrigin : '',
  });
  return {
    relay,
    edge,
    async stop() {
      await edge.stop();
      relay.child.kill('SIGTERM');
      await relay.exited;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

describe('edge origin pinning', () => {
  let attacker: Awaited<ReturnType<typeof attackerHost>>;
  before(async () => {
    attacker = await attackerHost();
  });
  after(() => attacker.close());

  it('with neither EDGE_URL nor edge_url set, a forged Host makes nobody dial the attacker', async () => {
    const pair = await startPair({ edgeUrlOnEdge: false, edgeUrlOnRelay: false });
    try {
      assert.equal(await publishWithHost(pair.edge.url, attacker.host, 'origin.spoof', 'x'), 202);
      // Long enough for the Durable Object to ask and the relay to dial on old code (LINK_WAIT_MS 1 s).
      await new Promise((r) => setTimeout(r, 4_000));
      assert.deepEqual(attacker.seen, [], 'the relay dialed the forged origin (and showed it the link secret)');
      const status = (await (await fetch(`${pair.edge.url}/v1/status`)).json()) as {
        edge: { links: boolean; links_off?: string };
      };
      assert.equal(status.edge.links, false);
      assert.match(status.edge.links_off ?? '', /EDGE_URL is not set/);

      // Even a caller holding the link secret cannot make this relay dial an origin it was not given.
      const dial = await fetch(
        `${pair.relay.url}/v1/edge/dial?topic=origin.spoof&edge=${encodeURIComponent(`http://${attacker.host}`)}`,
        { method: 'POST', headers: { authorization: `Bearer ${LINK_SECRET}` } },
      );
      assert.equal(dial.status, 403);
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(attacker.seen, []);
      assert.match(
        pair.relay.output.join(''),
        /edge dial request refused.*no edge_url|no edge_url.*edge dial request refused/,
      );
    } finally {
      await pair.stop();
    }
  });

  it('with the origin pinned on both sides, a forged Host changes nothing: the link goes to the real edge', async () => {
    const pair = await startPair({ edgeUrlOnEdge: true, edgeUrlOnRelay: true });
    try {
      assert.equal(await publishWithHost(pair.edge.url, attacker.host, 'origin.pinned', 'through'), 202);
      const deadline = Date.now() + 15_000;
      let stored = await history(pair.relay.url, 'origin.pinned');
      while (stored.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        stored = await history(pair.relay.url, 'origin.pinned');
      }
      assert.deepEqual(
        stored.map((m) => m.data),
        ['through'],
        'the edge publish reached the relay over a link to the pinned origin',
      );
      assert.deepEqual(attacker.seen, []);
    } finally {
      await pair.stop();
    }
  });
});
