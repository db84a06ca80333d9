import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { dcutr } from '@libp2p/dcutr';
import { type GossipSub, type GossipsubOpts, gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { ConnectionGater, Libp2p, PeerId, PrivateKey } from '@libp2p/interface';
import { noise } from '@libp2p/noise';
import { ping } from '@libp2p/ping';
import { pubsubPeerDiscovery } from '@libp2p/pubsub-peer-discovery';
import { tcp } from '@libp2p/tcp';
import { webRTC } from '@libp2p/webrtc';
import { webSockets } from '@libp2p/websockets';
import { yamux } from '@libp2p/yamux';
import { createLibp2p } from 'libp2p';
import { applyLibp2pFixes } from './libp2p-fixes.ts';
import { privateNetwork } from './pnet/protector.ts';
import { SCORE_THRESHOLDS, scoreParams } from './scoring.ts';
import { DISCOVERY_TOPIC } from './shards.ts';

/**
 * The libp2p host of a relay: TCP, WebSocket, WebRTC and circuit-relay transports, noise, yamux,
 * identify, ping, DCUtR, gossipsub (strict signing) and pubsub peer discovery; a private-network
 * protector when there is a key, an allow-list gater when there is a list, and the circuit-relay
 * server on publicly reachable nodes.
 */
export interface HostOptions {
  privateKey: PrivateKey;
  listen: readonly string[];
  announce: readonly string[];
  /** The 32-byte private-network key; peers without the same key cannot connect. */
  networkKey?: Uint8Array;
  /** Peer ids allowed to connect; empty allows all. */
  allow: readonly string[];
  relayServer?: { maxReservations: number; durationLimitMs: number; dataLimitBytes: number };
  stun: readonly string[];
  webrtcBind?: string;
  gossipTopics: readonly string[];
  maxMessageBytes: number;
  /** Publish to every connected peer of a topic (gossipsub flood publishing), or to the mesh only. */
  floodPublish: boolean;
  msgIdFn: GossipsubOpts['msgIdFn'];
  fastMsgIdFn: GossipsubOpts['fastMsgIdFn'];
  discoveryIntervalMs: number;
}

export type MeshServices = { identify: unknown; ping: unknown; dcutr: unknown; pubsub: GossipSub; relay?: unknown };
export type Host = Libp2p<MeshServices>;
/** The gossipsub methods the implementation has beyond its published interface. */
export type MeshPubsub = GossipSub & { getScore(peer: string): number; getMeshPeers(topic: string): string[] };
export const pubsubOf = (host: Host) => host.services.pubsub as MeshPubsub;

export function allowListGater(allow: readonly string[]): ConnectionGater {
  const allowed = new Set(allow);
  const deny = (peer: PeerId) => allowed.size > 0 && !allowed.has(peer.toString());
  return {
    denyDialPeer: deny,
    denyInboundEncryptedConnection: deny,
    denyOutboundEncryptedConnection: deny,
    denyInboundUpgradedConnection: deny,
    denyOutboundUpgradedConnection: deny,
    denyInboundRelayReservation: deny,
    denyOutboundRelayedConnection: (source, destination) => deny(source) || deny(destination),
    denyInboundRelayedConnection: (relay, remote) => deny(relay) || deny(remote),
  };
}

/** The largest gossip RPC a relay accepts (a larger one drops the stream). */
export const maxGossipRpcBytes = (maxMessageBytes: number) =>
  Math.max(4 * 1024 * 1024, 2 * maxMessageBytes + 64 * 1024);

/**
 * Gossip waiting to be sent to one peer, beyond which its stream is reset. A peer that stops
 * reading (frozen, or its link silently dead) is dropped only after three missed pings, and until
 * then everything published piled up for it without bound: 30 s of a busy mesh's gossip per such
 * peer. Past this, gossip finds no stream to it, counts the drop (`no_stream`) and cuts the link
 * at once, and the peer catches up when it is back. Eight of the largest RPCs (32 MiB by default):
 * a peer that is only slow for a moment stays.
 */
export const maxGossipBacklogBytes = (maxMessageBytes: number) => 8 * maxGossipRpcBytes(maxMessageBytes);

export async function createHost(options: HostOptions): Promise<Host> {
  await applyLibp2pFixes();
  const topics = [...options.gossipTopics, DISCOVERY_TOPIC];
  const rtcConfiguration = {
    iceServers: options.stun.map((urls) => ({ urls })),
    // libdatachannel option: gather ICE candidates on this address only.
    ...(options.webrtcBind ? { bindAddress: options.webrtcBind } : {}),
  } as NonNullable<Parameters<typeof webRTC>[0]>['rtcConfiguration'];
  const relay = options.relayServer;
  return createLibp2p<MeshServices>({
    start: false,
    privateKey: options.privateKey,
    addresses: { listen: [...options.listen], announce: [...options.announce] },
    transports: [
      tcp(),
      webSockets(),
      webRTC({ rtcConfiguration }),
      circuitRelayTransport({ reservationCompletionTimeout: 10_000 }),
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(options.networkKey ? { connectionProtector: privateNetwork({ key: options.networkKey }) } : {}),
    connectionGater: allowListGater(options.allow),
    // Off: liveness.ts pings instead, and tolerates a slow answer (see there).
    connectionMonitor: { enabled: false },
    connectionManager: { reconnectRetries: 10, reconnectRetryInterval: 500, reconnectBackoffFactor: 2 },
    peerDiscovery: [pubsubPeerDiscovery({ interval: options.discoveryIntervalMs, topics: [DISCOVERY_TOPIC] })],
    services: {
      identify: identify(),
      ping: ping(),
      dcutr: dcutr(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        msgIdFn: options.msgIdFn,
        fastMsgIdFn: options.fastMsgIdFn,
        allowedTopics: topics,
        allowPublishToZeroTopicPeers: true,
        floodPublish: options.floodPublish,
        ignoreDuplicatePublishError: true,
        emitSelf: false,
        fallbackToFloodsub: false,
        doPX: false,
        runOnLimitedConnection: true,
        // One RPC and one message at a time per peer: a sender's messages arrive in its order.
        awaitRpcHandler: true,
        awaitRpcMessageHandler: true,
        // The hard cap on one RPC (beyond it the stream is dropped); below it, an oversized
        // message reaches validation, is rejected, and costs its sender.
        maxInboundDataLength: maxGossipRpcBytes(options.maxMessageBytes),
        maxOutboundBufferSize: maxGossipBacklogBytes(options.maxMessageBytes),
        scoreParams: scoreParams(topics),
        scoreThresholds: SCORE_THRESHOLDS,
      }),
      ...(relay
        ? {
            relay: circuitRelayServer({
              reservations: {
                maxReservations: relay.maxReservations,
                applyDefaultLimit: true,
                defaultDurationLimit: relay.durationLimitMs,
                defaultDataLimit: BigInt(relay.dataLimitBytes),
              },
            }),
          }
        : {}),
    },
  });
}

/**
 * libp2p's refusal of mesh listen addresses in one line: each address and why (its own message
 * is a paragraph with each address's stack, advising `transportManager.faultTolerance`, which
 * is no relay option). Undefined for any other error. A port in use keeps libp2p's words
 * (`EADDRINUSE: address already in use …`), which the relay's start failure recognizes.
 */
export function listenFailure(error: unknown): Error | undefined {
  if (!(error instanceof Error) || error.name !== 'UnsupportedListenAddressesError') return undefined;
  const failures = [...error.message.matchAll(/^ {2}(\/\S+): (?:\w*Error: )?(.*)$/gm)].map(
    ([, address, reason]) => `${address} (${reason})`,
  );
  const which = failures.length > 0 ? failures.join(', ') : 'its listen addresses';
  return new Error(
    `the mesh could not listen on ${which}: check listen (--listen, ANODE_LISTEN or listen in the config file)`,
    { cause: error },
  );
}
