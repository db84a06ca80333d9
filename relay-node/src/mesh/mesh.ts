import { setTimeout as sleep } from 'node:timers/promises';
import { compareCursors, type Envelope } from '@anode/shared';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Hono } from 'hono';
import type { ComponentContext } from '../component.ts';
import { throttledLog } from '../logger.ts';
import { adminGuard } from '../dashboard/admin-guard.ts';
import { relayCard } from '../dashboard/relay-card.ts';
import { catchUpFrom, serveCatchUp } from './catch-up.ts';
import { createGossip } from './gossip.ts';
import { type GossipLinks, watchGossipLinks } from './gossip-links.ts';
import { watchLiveness } from './liveness.ts';
import { createHost } from './host.ts';
import { loadNetworkKey, loadPeerKey } from './identity.ts';
import { createMembers, MEMBERS_TOPIC } from './members.ts';
import { meshOpenWithAuth } from './mesh-config.ts';
import { createMeshMetrics } from './mesh-metrics.ts';
import { bootstrapStatus, clusterPeersStatus, gossipMeshStatus, peersStatus } from './mesh-status.ts';
import { createPeerMemory } from './peer-memory.ts';
import { createPeerManager } from './peers.ts';
import { createResyncNotices } from './resync-notice.ts';
import { createShards } from './shards.ts';
import { createStatusProtocol } from './status-protocol.ts';
import { startStunServer } from './stun-server.ts';
import { createSync, cursorAt } from './sync.ts';

/** How often each relay asks its mesh peers for their status cards. */
const STATUS_INTERVAL_MS = 2_000;

const authConfigured = (config: ComponentContext['config']) =>
  Boolean(config.jwt_secret) || config.jwt_public_keys.length > 0;

/**
 * The relay mesh: accepted messages go out on gossip, valid gossip comes in to the hub (stored
 * first in persist mode `all`, only fanned out in `origin`), history is served to peers and
 * fetched from them on (re)connect, and the node keeps itself connected.
 */
export async function createMesh(context: ComponentContext) {
  const { config, hub, log } = context;
  const shards = createShards(config.mesh_shards);
  const maxMessageBytes = config.mesh_max_message_bytes;
  // Scraped only once the host below exists.
  const metrics = createMeshMetrics(context.metrics.registry, () => peersStatus(host).length);
  const gossip = createGossip({
    shards,
    maxMessageBytes,
    nodeId: context.nodeId,
    batchMs: config.mesh_gossip_batch_ms,
    floodPublish: config.mesh_flood_publish,
    log,
    metrics,
    onUndelivered: (peer, since) => {
      notices.owe(peer, since);
      links?.undelivered(peer);
    },
    onLost: (lostTo, since) => {
      for (const peer of lostTo) notices.owe(peer, since);
    },
  });
  const networkKey = await loadNetworkKey(config);
  const openWithAuth = meshOpenWithAuth(config);
  const host = await createHost({
    privateKey: await loadPeerKey(config.data_dir),
    listen: config.listen.length > 0 ? config.listen : ['/ip4/127.0.0.1/tcp/0'],
    announce: config.announce,
    networkKey,
    allow: config.mesh_allow,
    relayServer: config.mesh_public
      ? {
          maxReservations: config.mesh_relay_max_reservations,
          durationLimitMs: config.mesh_relay_duration_limit_ms,
          dataLimitBytes: config.mesh_relay_data_limit_bytes,
        }
      : undefined,
    stun: config.mesh_stun,
    webrtcBind: config.mesh_webrtc_bind,
    gossipTopics: [...shards.topics, MEMBERS_TOPIC],
    maxMessageBytes,
    floodPublish: config.mesh_flood_publish,
    msgIdFn: gossip.msgIdFn,
    fastMsgIdFn: gossip.fastMsgIdFn,
    discoveryIntervalMs: config.mesh_discovery_interval_ms,
  });
  const persist = config.mesh_persist === 'all';
  const all = new Set(shards.topics.map((_, shard) => shard));
  let carried: ReadonlySet<number> = config.mesh_carry === 'all' ? all : new Set();

  // Every node catches up from its peers when they connect (sync.ts says when). Persist mode
  // `all`: into its own replica. Mode `origin` (one shared store): only fanned out, to what this
  // node has not delivered, so the subscribers of a node that missed gossip (a partition, a
  // pause) still get what was published meanwhile (the first Cassandra chaos run lost every such
  // message). The peer answers from the shared store plus its own spool: a message it acked
  // while the store was away is not in the shared store yet.
  // In mode `origin`, live subscribers are owed what was published while this node ran; older
  // messages reach a client through its resume cursor, not as live messages.
  const originFloor = cursorAt(Date.now() - config.mesh_sync_lookback_ms);
  // Each catch-up round reads its lookback again, so the same message is left out again: a line a
  // minute at most, with how many since the last.
  const skippedLog = throttledLog(log, 'warn', 'catch-up: a peer left out stored messages too large to carry here', {
    everyMs: 60_000,
    countField: 'messages',
  });
  const wrongTopicLog = throttledLog(log, 'warn', 'catch-up: a peer answered a topic with messages of another', {
    everyMs: 60_000,
    countField: 'messages',
  });
  const sync = createSync({
    dataDir: config.data_dir,
    lookbackMs: config.mesh_sync_lookback_ms,
    log: log.child({ part: 'sync' }),
    run: (peer, after, signal, plan) => {
      const floor = (cursor: string) => (persist || compareCursors(cursor, originFloor) >= 0 ? cursor : originFloor);
      return catchUpFrom(host, shards, maxMessageBytes, {
        peer: peerIdFromString(peer),
        shards: [...carried],
        after: floor(after),
        plan: { ...plan, from: (topic) => floor(plan.from(topic)) },
        signal,
        ingest: async (envelopes) => {
          const fresh = await hub.ingest(envelopes, { persist });
          metrics.caughtUp.inc(fresh);
          return fresh;
        },
        onSkipped: (topic, count) => {
          metrics.catchUpSkipped.inc(count);
          skippedLog({ peer, topic }, count);
        },
        onWrongTopic: (topic, count) => {
          metrics.catchUpWrongTopic.inc(count);
          wrongTopicLog({ peer, topic }, count);
        },
      });
    },
  });
  // What this node's gossip failed to deliver to a peer, that peer is told to catch up (resync-notice.ts).
  const notices = createResyncNotices({
    host,
    log: log.child({ part: 'resync' }),
    onNotice: (peer, since) => sync.resync(since, peer),
  });
  const meshPeers = new Set<string>();
  const memory = createPeerMemory({ dataDir: config.data_dir, log: log.child({ part: 'peer-memory' }) });
  const statusProtocol = createStatusProtocol({
    host,
    intervalMs: STATUS_INTERVAL_MS,
    card: async () => relayCard(await context.status()),
    meshPeers: () => meshPeers,
    onCard: (peer, card) => memory.card(peer, card),
    watching: () => context.watchers.local(),
    onWatched: () => context.watchers.touchRemote(),
    log: log.child({ part: 'status' }),
  });
  const peers = createPeerManager(host, {
    bootstrap: config.bootstrap,
    log,
    onMeshPeer(peer, up) {
      if (up) {
        meshPeers.add(peer);
        // No status request at once: the next round (<= 2 s) asks. Asking at connect time, while
        // catch-up and duplicate-connection pruning run, made a restarted relay miss its catch-up
        // (mesh-failover.test.ts, reproduced twice; not fully explained).
        memory.up(peer);
        sync.peerUp(peer);
        notices.peerUp(peer);
        members.peerUp();
      } else {
        meshPeers.delete(peer);
        memory.down(peer);
        // Gossip still waiting in its stream when the connection closed is lost: it catches up.
        const since = gossip.peerDown(peer);
        if (since !== undefined) notices.owe(peer, since);
        sync.peerDown(peer);
        members.peerDown(peer);
      }
    },
    // Catch up from a little before the link was cut (resync subtracts the lookback too).
    onLinkInterrupted: (peer) => sync.resync(Date.now() - 2_000, peer),
  });

  const members = createMembers({
    host,
    cluster: context.cluster,
    intervalMs: config.mesh_member_interval_ms,
    timeoutMs: config.mesh_member_timeout_ms,
    meshPeers: () => meshPeers,
    log: log.child({ part: 'members' }),
  });

  // One batch, one write (the hub dedups by envelope id, in the order given), delivered to this
  // node's subscribers before its own copy is committed (the origin has it durably).
  const receive = (envelopes: Envelope[]) => {
    hub.ingest(envelopes, { persist, deliverFirst: true }).catch((error: unknown) => {
      log.error({ err: error, ids: envelopes.length }, 'storing gossiped messages failed; will catch up');
      sync.resync();
    });
  };

  const carrySubscribed = () => {
    const wanted = new Set<number>();
    for (const pattern of hub.subscribedKeys()) for (const s of shards.forPattern(pattern)) wanted.add(s);
    carried = wanted;
    gossip.carry(wanted);
  };

  let stopAccepted: (() => void) | undefined;
  let carryTimer: ReturnType<typeof setInterval> | undefined;
  let stun: { close(): void } | undefined;
  let links: GossipLinks | undefined;
  let liveness: { stop(): void } | undefined;

  return {
    async start() {
      await memory.load();
      await host.start();
      liveness = watchLiveness(host, {
        intervalMs: config.mesh_ping_interval_ms,
        log,
        onAnswered: (peer, sentAt) => sync.heard(peer, sentAt),
      });
      gossip.attach(host.services.pubsub, host.peerId.toString(), receive);
      if (config.mesh_carry === 'all') gossip.carry(all);
      else {
        carrySubscribed();
        carryTimer = setInterval(carrySubscribed, 1_000);
        carryTimer.unref();
      }
      await serveCatchUp(host, { store: context.store, shards, maxMessageBytes, log });
      await notices.start();
      await members.start();
      await statusProtocol.start();
      stopAccepted = hub.onAccepted(gossip.send);
      if (config.mesh_stun_port !== undefined) stun = await startStunServer(config.mesh_stun_port);
      await sync.start();
      peers.start();
      links = watchGossipLinks(
        host,
        () => meshPeers,
        log,
        (peer) => {
          sync.resync(Date.now() - 5_000, peer);
          // Its streams were broken both ways: what this node sent it may be lost too.
          notices.owe(peer, gossip.backlogSince(peer));
        },
      );
      if (persist && config.bootstrap.length > 0 && config.mesh_startup_sync_ms > 0) {
        const ac = new AbortController();
        await Promise.race([
          sync.firstSync,
          sleep(config.mesh_startup_sync_ms, undefined, { signal: ac.signal }),
        ]).catch(() => {});
        ac.abort();
      }
      log.info(
        { peer_id: host.peerId.toString(), multiaddrs: host.getMultiaddrs().map(String), private: !!networkKey },
        'mesh started',
      );
      if (openWithAuth) {
        log.warn(
          { mesh_open: true },
          'OPEN MESH WITH AUTH ON: no mesh_key and no mesh_allow, so any node that reaches the mesh port ' +
            'reads all history and publishes as anyone, bypassing auth (mesh_open is set)',
        );
      }
    },

    async stop() {
      await members.stop();
      await statusProtocol.stop();
      stopAccepted?.();
      clearInterval(carryTimer);
      links?.stop();
      liveness?.stop();
      peers.stop();
      await gossip.flush();
      await gossip.stop();
      await notices.stop();
      await sync.stop();
      skippedLog.flush();
      wrongTopicLog.flush();
      stun?.close();
      await host.stop();
      await memory.flush();
    },

    /** `DELETE /v1/mesh/peers/:peer`: forget a remembered peer that is down (admin). */
    routes(app: Hono) {
      app.delete(
        '/v1/mesh/peers/:peer',
        adminGuard({ adminToken: config.admin_token, authOn: authConfigured(config) }),
        (c) => {
          const peer = c.req.param('peer') ?? '';
          const result = memory.forget(peer);
          if (result === 'forgotten') return c.json({ forgotten: peer });
          if (result === 'connected') {
            return c.json(
              { error: { code: 'bad_frame', message: 'this peer is connected: it is not forgotten' } },
              409,
            );
          }
          return c.json({ error: { code: 'bad_frame', message: 'no such remembered peer' } }, 404);
        },
      );
    },

    status() {
      return {
        node: { peer_id: host.peerId.toString(), multiaddrs: host.getMultiaddrs().map(String) },
        ...clusterPeersStatus(host, memory, statusProtocol.errorOf),
        mesh: {
          persist: config.mesh_persist,
          carry: config.mesh_carry,
          shards: shards.count,
          private_network: networkKey !== undefined,
          // Set when mesh_open lets a mesh with no key and no allow-list run with auth on.
          open_with_auth: openWithAuth,
          allow_list: config.mesh_allow.length,
          relay_server: config.mesh_public,
          rejected_messages: gossip.rejected,
          topics: gossipMeshStatus(host),
          bootstrap: bootstrapStatus(peers.bootstrapStatus()),
          ...members.status(),
          sync: sync.status(),
        },
      };
    },

    healthy: () => host.status === 'started',
  };
}
