import { rm } from 'node:fs/promises';
import type { Envelope, ServerFrame } from '@anode/shared';
import { type EdgeRuntime, freePort, startEdge } from '../../worker/test-support/edge-runtime.ts';
import { type RelayProcess, spawnRelay, tempDir } from './relay.ts';
import type { RawSocket } from './ws.ts';

/**
 * A relay process and the edge Worker (on workerd, through miniflare) linked to it with a fresh
 * link secret, each on a free loopback port. `restartRelay` stops the relay and starts it again on
 * the same port and data folder (the edge's RELAY_URLS stays right).
 */
export { type EdgeRuntime, freePort, startEdge };

export const LINK_SECRET = 'e2e-edge-link-secret-0123456789';

export interface LinkedEdge {
  relay: RelayProcess;
  edge: EdgeRuntime;
  dataDir: string;
  stopRelay(): Promise<void>;
  startRelay(): Promise<RelayProcess>;
  stop(): Promise<void>;
}

export async function startLinkedEdge(edgeVars: Record<string, string> = {}): Promise<LinkedEdge> {
  const dataDir = await tempDir('anode-edge-e2e-');
  // The edge's origin is pinned on both sides (its EDGE_URL, the relay's edge_url), so its port
  // is chosen first.
  const edgeUrl = `http://127.0.0.1:${await freePort()}`;
  const spawnAt = (port: string) =>
    spawnRelay(['--port', port, '--data-dir', dataDir, '--log-level', 'info'], {
      ANODE_EDGE_LINK_SECRET: LINK_SECRET,
      ANODE_EDGE_URL: edgeUrl,
    });
  const linked: LinkedEdge = {
    relay: await spawnAt('0'),
    edge: undefined as unknown as EdgeRuntime,
    dataDir,
    async stopRelay() {
      if (linked.relay.child.exitCode === null) linked.relay.child.kill('SIGTERM');
      await linked.relay.exited;
    },
    async startRelay() {
      linked.relay = await spawnAt(new URL(linked.relay.url).port);
      return linked.relay;
    },
    async stop() {
      await linked.edge.stop();
      await linked.stopRelay();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  linked.edge = await startEdge({
    RELAY_URLS: linked.relay.url,
    LINK_SECRET,
    LINK_WAIT_MS: '2000',
    LINK_RETRY_MAX_MS: '400',
    EDGE_URL: edgeUrl,
    ...edgeVars,
  });
  return linked;
}

/** Publish over HTTP to a relay or the edge; resolves with the acks. */
export async function publish(url: string, topic: string, data: unknown[]): Promise<{ id: string; cursor: string }[]> {
  const response = await fetch(`${url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(data.map((d) => ({ data: d }))),
  });
  if (response.status !== 202) throw new Error(`publish answered ${response.status}: ${await response.text()}`);
  return ((await response.json()) as { messages: { id: string; cursor: string }[] }).messages;
}

export type Msg = Envelope & { op: 'msg' };
export const isMsg = (frame: ServerFrame): frame is Msg => frame.op === 'msg';

/** Wait until `socket` holds messages with every one of `ids` (bounded). */
export async function receivedAll(socket: RawSocket, ids: readonly string[], timeoutMs = 15_000): Promise<Msg[]> {
  const deadline = Date.now() + timeoutMs;
  const have = () => new Set(socket.frames.filter(isMsg).map((m) => m.id));
  while (!ids.every((id) => have().has(id))) {
    if (Date.now() > deadline) {
      const missing = ids.filter((id) => !have().has(id));
      throw new Error(`missing ${missing.length} of ${ids.length} messages after ${timeoutMs} ms`);
    }
    await socket.next(isMsg, deadline - Date.now()).catch(() => undefined);
  }
  return socket.frames.filter(isMsg);
}
