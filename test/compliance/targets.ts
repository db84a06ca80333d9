import { rm } from 'node:fs/promises';
import { freePort, LINK_SECRET, startEdge } from '../helpers/edge.ts';
import { spawnRelay, startRelay, tempDir } from '../helpers/relay.ts';

/**
 * The three targets the compliance suite runs against, all started with the same contract-level
 * settings (auth on, small limits) so that one case list can hold them to one answer:
 * - `relay`: a relay node in this process.
 * - `edge`: the edge Worker on workerd (miniflare) standing alone.
 * - `edge-linked`: the edge Worker linked to a relay process; clients talk to the edge only. Its
 *   ring is smaller than the relay's retention, so resumes and history go over the link.
 */
export type TargetName = 'relay' | 'edge' | 'edge-linked';
export const TARGETS: readonly TargetName[] = ['relay', 'edge', 'edge-linked'];

export const SECRET = 'compliance-suite-jwt-secret-0123456789';
/** The token that may read /v1/status and /metrics (auth is on). */
export const METRICS_TOKEN = 'compliance-metrics-token-0123';

/** The limits every target is started with (PROTOCOL.md "Limits" and the rate limits). */
export const LIMITS = {
  maxMessageBytes: 1000,
  maxFrameBytes: 6000,
  maxBodyBytes: 6000,
  rate: 1,
  burst: 100,
  /** Subscriptions per connection (relay `max-subscriptions`). */
  maxSubscriptions: 3,
  /** What the target keeps per topic: relay retention; the standalone edge's ring. */
  retained: 50,
  /** The linked edge's ring (its relay keeps `retained`). */
  linkedRing: 5,
} as const;

/** The one origin every target allows for CORS (none is allowed by default). */
export const ALLOWED_ORIGIN = 'https://app.example';

export interface Target {
  name: TargetName;
  url: string;
  wsUrl: string;
  stop(): Promise<void>;
}

const relayFlags = {
  'max-message-bytes': String(LIMITS.maxMessageBytes),
  'max-frame-bytes': String(LIMITS.maxFrameBytes),
  'max-body-bytes': String(LIMITS.maxBodyBytes),
  'publish-rate': String(LIMITS.rate),
  'publish-burst': String(LIMITS.burst),
  'max-subscriptions': String(LIMITS.maxSubscriptions),
  'retention-max-messages': String(LIMITS.retained),
  'retention-sweep-ms': '50',
  'cors-origins': ALLOWED_ORIGIN,
  'metrics-token': METRICS_TOKEN,
};

const edgeVars = {
  JWT_SECRET: SECRET,
  MAX_MESSAGE_BYTES: String(LIMITS.maxMessageBytes),
  MAX_FRAME_BYTES: String(LIMITS.maxFrameBytes),
  MAX_BODY_BYTES: String(LIMITS.maxBodyBytes),
  PUBLISH_RATE: String(LIMITS.rate),
  PUBLISH_BURST: String(LIMITS.burst),
  RING_SIZE: String(LIMITS.retained),
  MAX_SUBSCRIPTIONS: String(LIMITS.maxSubscriptions),
  CORS_ORIGINS: ALLOWED_ORIGIN,
  METRICS_TOKEN,
};

async function relayTarget(): Promise<Target> {
  const relay = await startRelay({ ...relayFlags, 'jwt-secret': SECRET });
  return { name: 'relay', url: relay.url, wsUrl: relay.wsUrl, stop: () => relay.stop() };
}

async function edgeTarget(): Promise<Target> {
  const edge = await startEdge({ ...edgeVars, EDGE_URL: '' });
  return { name: 'edge', url: edge.url, wsUrl: edge.wsUrl, stop: () => edge.stop() };
}

async function linkedTarget(): Promise<Target> {
  const dataDir = await tempDir('anode-compliance-');
  const edgeUrl = `http://127.0.0.1:${await freePort()}`;
  const args = Object.entries(relayFlags).flatMap(([flag, value]) => [`--${flag}`, value]);
  const relay = await spawnRelay(['--port', '0', '--data-dir', dataDir, '--log-level', 'info', ...args], {
    ANODE_EDGE_LINK_SECRET: LINK_SECRET,
    ANODE_EDGE_URL: edgeUrl,
  });
  const edge = await startEdge({
    ...edgeVars,
    RING_SIZE: String(LIMITS.linkedRing),
    RELAY_URLS: relay.url,
    LINK_SECRET,
    LINK_WAIT_MS: '2000',
    LINK_RETRY_MAX_MS: '400',
    EDGE_URL: edgeUrl,
  });
  return {
    name: 'edge-linked',
    url: edge.url,
    wsUrl: edge.wsUrl,
    async stop() {
      await edge.stop();
      if (relay.child.exitCode === null) relay.child.kill('SIGTERM');
      await relay.exited;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export function startTarget(name: TargetName): Promise<Target> {
  switch (name) {
    case 'relay':
      return relayTarget();
    case 'edge':
      return edgeTarget();
    case 'edge-linked':
      return linkedTarget();
  }
}
