import { freePort } from '../../worker/test-support/edge-runtime.ts';
import type { Envelope } from '@anode/shared';
import { type AnodeClient, createClient, type Subscription } from '@anode/client';
import { type RelayProcess, spawnRelay, tempDir } from './relay.ts';

/** Helpers for the relay-mesh tests: status, waiting, publishing and collecting messages. */
export interface PeerStatus {
  peer_id: string;
  connection: 'direct' | 'relayed' | 'webrtc';
  latency_ms: number | null;
  score: number;
  connections: { type: string; addr: string; limited: boolean }[];
}

export interface MeshStatus {
  node: { id: string; peer_id: string; multiaddrs: string[] };
  peers: PeerStatus[];
  mesh: {
    topics: Record<string, string[]>;
    rejected_messages: number;
    sync: { runs: number; received: number } | null;
  };
}

/** Flags that make a test mesh converge quickly (discovery and liveness every fraction of a second). */
export const FAST_MESH = {
  'mesh-discovery-interval-ms': '300',
  'mesh-ping-interval-ms': '1000',
  'publish-rate': '100000',
  'publish-burst': '100000',
};

export const asArgs = (flags: Record<string, string>) => Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v]);

/**
 * Relay processes on FAST_MESH plus `flags`, each on a fresh data folder (removed when the test
 * process exits). `kill()` ends them all, one frozen with SIGSTOP too.
 */
export function meshProcesses(flags: Record<string, string>) {
  const relays: RelayProcess[] = [];
  return {
    async spawn(...extra: string[]): Promise<RelayProcess> {
      const dir = await tempDir();
      const relay = await spawnRelay([
        '--port',
        '0',
        '--data-dir',
        dir,
        ...asArgs({ ...FAST_MESH, ...flags }),
        ...extra,
      ]);
      relays.push(relay);
      return relay;
    },
    async kill(): Promise<void> {
      for (const relay of relays) {
        relay.child.kill('SIGCONT');
        relay.child.kill('SIGKILL');
      }
      await Promise.all(relays.map((relay) => relay.exited));
    },
  };
}

export async function meshStatus(url: string): Promise<MeshStatus> {
  const res = await fetch(`${url}/v1/status`);
  if (!res.ok) throw new Error(`status ${res.status}`);
  return (await res.json()) as MeshStatus;
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet (e.g. a node that is still starting)
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * Every node sees every other as a peer (or, with `minPeers`, at least that many), and carries
 * `gossipTopic` with at least one of them in its gossip mesh.
 */
export async function waitForFullMesh(
  urls: string[],
  gossipTopic: string,
  timeoutMs = 30_000,
  minPeers = urls.length - 1,
): Promise<void> {
  await waitFor(
    minPeers >= urls.length - 1
      ? `a full mesh of ${urls.length} nodes`
      : `${urls.length} nodes with ${minPeers}+ peers each`,
    async () => {
      const all = await Promise.all(urls.map(meshStatus));
      return all.every((s) => s.peers.length >= minPeers && (s.mesh.topics[gossipTopic]?.length ?? 0) >= 1);
    },
    timeoutMs,
    100,
  );
}

/** Publish over HTTP; resolves with the acks. */
export async function publish(url: string, topic: string, items: unknown[]): Promise<{ id: string; cursor: string }[]> {
  const res = await fetch(`${url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(items),
  });
  if (res.status !== 202) throw new Error(`publish: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { messages: { id: string; cursor: string }[] }).messages;
}

/** A client subscribed to a pattern, recording what its handler is given (after client-level dedup). */
export interface Collector {
  client: AnodeClient;
  sub: Subscription;
  received: Envelope[];
  ids(): Set<string>;
}

export async function collect(wsUrl: string, pattern: string, after?: string): Promise<Collector> {
  const client = createClient({ url: wsUrl, reconnect: { initialDelayMs: 50, maxDelayMs: 250 } });
  const received: Envelope[] = [];
  const sub = client.subscribe(pattern, (m) => received.push(m), after === undefined ? {} : { after });
  await sub.ready;
  return { client, sub, received, ids: () => new Set(received.map((m) => m.id)) };
}

/** The node id that minted a cursor (its origin). */
export const originOf = (cursor: string) => cursor.slice(cursor.indexOf('-') + 1);

/** Cursors per origin, in the order they were received. */
export function byOrigin(messages: Envelope[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of messages) out.set(originOf(m.cursor), [...(out.get(originOf(m.cursor)) ?? []), m.cursor]);
  return out;
}

/** Flags for a node that joins through `bootstrap` on fixed free ports, so it can be restarted as itself. */
export async function rejoinableArgs(bootstrap: string): Promise<string[]> {
  const [port, listen] = [await freePort(), await freePort()];
  return ['--port', String(port), '--listen', `/ip4/127.0.0.1/tcp/${listen}`, '--bootstrap', bootstrap];
}

export { freePort };
