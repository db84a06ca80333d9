import { type GossipsubOpts, gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import { noise } from '@libp2p/noise';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@libp2p/yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { lpStream } from '@libp2p/utils';
import { createLibp2p } from 'libp2p';
import { pubsubOf } from './host.ts';
import { privateNetwork } from './pnet/protector.ts';
import { keyFromHex } from './pnet/swarm-key.ts';

/**
 * A bare libp2p peer for tests of the mesh's defences: it can try to join with or without the
 * network key, and publish arbitrary bytes (signed or not) on any gossip topic. Tests use it
 * through this module so that only mesh/ depends on libp2p.
 */
export interface TestPeerOptions {
  /** 64 hex digits; none joins as an outsider. */
  networkKey?: string;
  /** `none` publishes unsigned messages, which a strict-signing mesh rejects. */
  signing?: 'strict' | 'none';
  /** gossipsub's cap on one inbound RPC (a larger one makes it reset the stream); default 4 MiB. */
  maxInboundDataLength?: number;
  /** gossipsub's cap on what waits to be sent to one peer (beyond it the stream is reset); default none. */
  maxOutboundBufferSize?: number;
  /** Answer the relays' pings (`/ipfs/ping/1.0.0`), as a live member does; without, they drop it after three. */
  answerPings?: boolean;
  /** A relay's message ids (its gossip's `msgIdFn` and `fastMsgIdFn`), for tests of the gossip on this peer. */
  messageIds?: Pick<GossipsubOpts, 'msgIdFn' | 'fastMsgIdFn'>;
}

export async function createTestPeer(options: TestPeerOptions = {}) {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(options.networkKey ? { connectionProtector: privateNetwork({ key: keyFromHex(options.networkKey) }) } : {}),
    services: {
      identify: identify(),
      pubsub: gossipsub({
        globalSignaturePolicy: options.signing === 'none' ? 'StrictNoSign' : 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        fallbackToFloodsub: false,
        floodPublish: true,
        ...(options.maxInboundDataLength ? { maxInboundDataLength: options.maxInboundDataLength } : {}),
        ...(options.maxOutboundBufferSize ? { maxOutboundBufferSize: options.maxOutboundBufferSize } : {}),
        ...options.messageIds,
      }),
      ...(options.answerPings ? { ping: ping() } : {}),
    },
  });
  const host = node as unknown as Parameters<typeof pubsubOf>[0];
  const received: { topic: string; data: Uint8Array }[] = [];
  pubsubOf(host).addEventListener('message', (event) =>
    received.push({ topic: event.detail.topic, data: event.detail.data }),
  );
  return {
    peerId: node.peerId.toString(),

    /** Dial a relay's multiaddr; rejects when the connection is refused (or not made in time). */
    async dial(address: string, timeoutMs = 5_000): Promise<void> {
      await node.dial(multiaddr(address), { signal: AbortSignal.timeout(timeoutMs) });
    },

    connections: () => node.getConnections().filter((c) => c.status === 'open').length,

    /** Its listen addresses, with its peer id. */
    multiaddrs: () => node.getMultiaddrs().map(String),

    /** Its gossipsub, for tests that run the mesh's own gossip on it. */
    pubsub: pubsubOf(host),

    /** The libp2p node, for tests that run the mesh's own protocols on it. */
    host,

    /** Stop reading the gossip `peer` sends (as a frozen or overloaded peer would). */
    stopReadingFrom(peer: string): void {
      const inbound = (
        host.services.pubsub as unknown as { streamsInbound: Map<string, { rawStream: { pause(): void } }> }
      ).streamsInbound;
      const stream = inbound.get(peer);
      if (!stream) throw new Error(`no gossip stream from ${peer}`);
      stream.rawStream.pause();
    },

    /** Subscribe to a gossip topic and wait until `peer` is known to be subscribed to it too. */
    async join(topic: string, peer: string, timeoutMs = 10_000): Promise<void> {
      const pubsub = pubsubOf(host);
      pubsub.subscribe(topic);
      const deadline = Date.now() + timeoutMs;
      while (!pubsub.getSubscribers(topic).some((p) => p.toString() === peer)) {
        if (Date.now() > deadline) throw new Error(`${peer} never subscribed to ${topic}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },

    /** Publish raw bytes on a gossip topic; resolves with how many peers it was sent to. */
    async publishRaw(topic: string, data: Uint8Array): Promise<number> {
      return (await pubsubOf(host).publish(topic, data)).recipients.length;
    },

    /**
     * Serve `protocol` as catch-up is spoken (varint-length-prefixed JSON frames, one answer per
     * request) with `answer` (bytes as they are, anything else as JSON), until the asking side
     * ends the stream. Serving catch-up makes this peer a mesh peer to the relays it connects to:
     * they catch up from it. Call before dialling.
     */
    async serveJson(protocol: string, answer: (request: Record<string, unknown>) => unknown): Promise<void> {
      await node.handle(
        protocol,
        async (stream) => {
          const lp = lpStream(stream);
          try {
            for (;;) {
              const request = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as Record<
                string,
                unknown
              >;
              const answered = await answer(request);
              await lp.write(
                answered instanceof Uint8Array ? answered : new TextEncoder().encode(JSON.stringify(answered)),
              );
            }
          } catch (error) {
            stream.abort(error as Error);
          }
        },
        { runOnLimitedConnection: true },
      );
    },

    /** Gossip messages received so far (topic and data), oldest first. */
    received,

    stop: () => node.stop(),
  };
}

export type TestPeer = Awaited<ReturnType<typeof createTestPeer>>;
