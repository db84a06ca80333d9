import { type Message, TopicValidatorResult } from '@libp2p/gossipsub';
import type { PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { assertDataDepth, isNodeId, MAX_DATA_DEPTH } from '@anode/shared';
import { z } from 'zod';
import type { Cluster } from '../cluster.ts';
import type { Logger } from '../logger.ts';
import type { Host } from './host.ts';
import {
  announcedBeatMs,
  BEAT_DIGEST,
  believedBeatMs,
  type CadenceOptions,
  memberTimeoutMs,
  nextBeatMs,
  scalesRaisedInterval,
} from './member-cadence.ts';

/**
 * Live membership for work that exactly one relay must do (pulling a source), and the shared
 * state that goes with it:
 *
 * - Every node gossips a heartbeat `{"v":1,"node":"<node id>","digests":{"sources":"…"}}` on
 *   `/anode/1/members` every `intervalMs`. A node is a member while its heartbeats keep coming
 *   (`timeoutMs`); it is dropped at once when its connection closes or when it says it is
 *   leaving (`"leaving":true`, sent on a clean stop). Heartbeats travel by gossip, so nodes that
 *   are not directly connected still see each other. Beyond 10 members a node beats less often
 *   and says so in each beat (`digests["~beat_ms"]`, member-cadence.ts), so the heartbeats a
 *   node handles stay bounded; each member's timeout follows its own announced interval.
 * - A node that just started is not settled: it owns nothing until it has heard every peer it is
 *   connected to and the longest interval any member announces has passed (at least two of its
 *   own), or five of its own intervals (at least the longest and two more). So joining never
 *   makes two nodes pull one source. A node that finds it was frozen for longer than the others
 *   allow since its last beat, or long enough for its connections to be dropped (FROZEN_MS),
 *   settles again the same way.
 * - When a heartbeat's digest of a shared state differs from ours, the state is fetched from
 *   that peer over `/anode/state/1.0.0` (one request `{"name":"sources"}`, one answer
 *   `{"snapshot":…}`, varint-length-prefixed JSON) and merged (last writer wins per key). Both
 *   sides do so, so every member converges within a few heartbeats.
 */
export const MEMBERS_TOPIC = '/anode/1/members';
export const STATE_PROTOCOL = '/anode/state/1.0.0';
const MAX_STATE_BYTES = 64 * 1024 * 1024;
const FETCH_TIMEOUT_MS = 15_000;
/**
 * The deepest shared-state snapshot taken, far below the ~4,400 levels JSON.stringify recurses
 * through: the deepest value a state holds (a source definition loaded: MAX_DEFINITION_DEPTH in
 * sources/definition.ts, twice MAX_DATA_DEPTH; a new one is held to MAX_DATA_DEPTH) plus the
 * snapshot's own levels above it (3 for a definition), with room to spare. Stated here, not
 * imported: the mesh knows its states only as JSON.
 */
const MAX_SNAPSHOT_DEPTH = 2 * MAX_DATA_DEPTH + 16;
/** A node whose timer fired this late re-settles even where its timeout is longer (pings drop it). */
const FROZEN_MS = 15_000;
/** Longest a relay that announces this node's id goes unlogged. */
const TWIN_LOG_MS = 60_000;

const heartbeatSchema = z.strictObject({
  v: z.literal(1),
  // The node id grammar (shared isNodeId): the id goes into source ownership and the logs.
  node: z.string().refine(isNodeId, 'not a node id'),
  leaving: z.boolean().optional(),
  digests: z.record(z.string().max(100), z.string().max(200)).default({}),
});
type Heartbeat = z.infer<typeof heartbeatSchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function parseHeartbeat(data: Uint8Array): Heartbeat | undefined {
  try {
    const parsed = heartbeatSchema.safeParse(JSON.parse(decoder.decode(data)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * parseHeartbeat, once per received message: the topic validator and the message event see the
 * same `data` (as gossip.ts's batches), and each heartbeat was parsed by zod twice, about 3% of an
 * idle relay's CPU. What the event handler reads is the validator's own result, so nothing that
 * passed one check reaches the other unchecked.
 */
function heartbeatParser() {
  const parsed = new WeakMap<Uint8Array, Heartbeat | null>();
  return (data: Uint8Array): Heartbeat | undefined => {
    const known = parsed.get(data);
    if (known !== undefined) return known ?? undefined;
    const beat = parseHeartbeat(data);
    parsed.set(data, beat ?? null);
    return beat;
  };
}

export interface MembersOptions {
  host: Host;
  cluster: Cluster;
  intervalMs: number;
  timeoutMs: number;
  /** Peers this node is connected to that speak the mesh protocols. */
  meshPeers: () => ReadonlySet<string>;
  log: Logger;
  /** Members up to which this node beats every `intervalMs` (member-cadence.ts; tests lower it). */
  scaleFrom?: number;
}

export function createMembers(options: MembersOptions) {
  const { host, cluster, intervalMs, timeoutMs, log } = options;
  // By peer id: its node id, when it was last heard, and the interval it announced (none: an older relay).
  const seen = new Map<string, { node: string; at: number; beatMs: number | undefined }>();
  const fetching = new Map<string, number>(); // `${peer}/${name}` → when the last fetch started
  let startedAt = 0;
  let settled = false;
  const cadence: CadenceOptions = { intervalMs, timeoutMs, scaleFrom: options.scaleFrom };
  // The interval this node announced in its last beat, and when the next one is due.
  let beatMs = intervalMs;
  let nextBeatAt = Number.NEGATIVE_INFINITY;
  let lastBeatAt = Number.NEGATIVE_INFINITY;
  // The shared-state digests of the last beat: a change is announced at the next tick.
  let lastDigests = '';
  let warnedRaised = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  let stopped = false;

  const pubsub = () => host.services.pubsub;
  const heartbeatOf = heartbeatParser();
  const apply = () =>
    cluster.update(
      [...seen.values()].map((entry) => entry.node),
      settled,
    );

  const believed = (entry: { beatMs: number | undefined }) => believedBeatMs(cadence, entry.beatMs, seen.size + 1);

  const checkSettled = () => {
    if (settled) return;
    const elapsed = Date.now() - startedAt;
    const heardAll = [...options.meshPeers()].every((peer) => seen.has(peer));
    // Every member beats within its announced interval: one of the longest, plus a tick, hears
    // the members not directly connected too (two intervals when none beats slower than this one).
    const longest = Math.max(intervalMs, ...[...seen.values()].map(believed));
    if (
      (heardAll && elapsed >= Math.max(2 * intervalMs, longest + intervalMs)) ||
      elapsed >= Math.max(5 * intervalMs, longest + 2 * intervalMs)
    ) {
      settled = true;
      log.info({ members: [...seen.values()].length + 1 }, 'cluster membership settled');
    }
  };

  const stateDigests = () => Object.fromEntries([...cluster.shared()].map(([name, state]) => [name, state.digest()]));
  const heartbeat = (leaving = false, digests = stateDigests()): Heartbeat => ({
    v: 1,
    node: cluster.self,
    ...(leaving ? { leaving } : {}),
    digests: { ...digests, [BEAT_DIGEST]: String(beatMs) },
  });

  const send = async (beat: Heartbeat) => {
    try {
      await pubsub().publish(MEMBERS_TOPIC, encoder.encode(JSON.stringify(beat)));
    } catch (error) {
      log.debug({ err: error }, 'heartbeat not sent');
    }
  };

  /** Beat now, announcing the interval until the next beat. */
  const beatNow = () => {
    const now = Date.now();
    const allAnnounce = [...seen.values()].every((entry) => entry.beatMs !== undefined);
    beatMs = nextBeatMs(cadence, seen.size + 1, allAnnounce);
    if (!warnedRaised && scalesRaisedInterval(cadence, beatMs)) {
      warnedRaised = true;
      log.warn(
        { members: seen.size + 1, configuredMs: intervalMs, beatMs },
        'mesh_member_interval_ms was raised by hand and the mesh scales it again above 10 members; ' +
          'set mesh_member_interval_ms and mesh_member_timeout_ms back to their defaults (docs/sources.md)',
      );
    }
    nextBeatAt = now + beatMs;
    lastBeatAt = now;
    const digests = stateDigests();
    lastDigests = JSON.stringify(digests);
    void send(heartbeat(false, digests));
  };

  let lastTick = 0;
  const tick = () => {
    const now = Date.now();
    const allowed = memberTimeoutMs(cadence, beatMs);
    if (settled && (now - lastBeatAt > allowed || now - lastTick > Math.min(allowed, FROZEN_MS))) {
      // This node was frozen (SIGSTOP, a long GC, a suspended VM) past what the others allow since
      // its last beat: they have dropped it and taken its work. Settle again before owning
      // anything, rather than pull everything alone.
      settled = false;
      startedAt = now;
      log.warn(
        { frozenMs: now - lastTick, sinceBeatMs: now - lastBeatAt },
        'this node was unresponsive; rejoining the cluster',
      );
    }
    lastTick = now;
    for (const [peer, entry] of seen) if (now - entry.at > memberTimeoutMs(cadence, believed(entry))) seen.delete(peer);
    // A fetch older than an interval no longer holds the next one back: forget it (peers churn).
    for (const [key, at] of fetching) if (at >= 0 && now - at >= intervalMs) fetching.delete(key);
    checkSettled();
    apply();
    // Rounded to the nearest tick: a beat a little early rather than late. A shared state that
    // changed (an admin change to a source) goes out at once rather than with the next beat.
    if (now >= nextBeatAt - intervalMs / 2 || JSON.stringify(stateDigests()) !== lastDigests) beatNow();
  };

  const fetchState = async (peer: string, name: string) => {
    const key = `${peer}/${name}`;
    const last = fetching.get(key);
    if (last !== undefined && (last < 0 || Date.now() - last < intervalMs)) return; // in flight (<0) or recent
    fetching.set(key, -1);
    const state = cluster.shared().get(name);
    let stream: Stream | undefined;
    try {
      if (!state) return;
      stream = await host.dialProtocol(peerIdFromString(peer) as PeerId, STATE_PROTOCOL, {
        runOnLimitedConnection: true,
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      const lp = lpStream(stream, { maxDataLength: MAX_STATE_BYTES });
      await lp.write(encoder.encode(JSON.stringify({ name })), { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      const answer = JSON.parse(
        decoder.decode((await lp.read({ signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) })).subarray()),
      ) as { snapshot?: unknown; error?: string };
      await stream.close({ signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (answer.error) throw new Error(answer.error);
      // A state is serialized again (its digest, every beat): one nested past what JSON.stringify
      // recurses through (about 4,400 levels) threw from the beat timer and stopped the relay.
      try {
        assertDataDepth(answer.snapshot, MAX_SNAPSHOT_DEPTH);
      } catch (error) {
        // Nested too deep, or (the same walk) holding a number JSON cannot carry.
        throw new Error('snapshot refused', { cause: error }); // the log adds the cause's reason
      }
      await state.merge(answer.snapshot);
    } catch (error) {
      stream?.abort(error as Error);
      if (!stopped)
        log.warn({ err: error, peer, state: name }, 'fetching shared state from a member failed; will retry');
    } finally {
      fetching.set(key, Date.now());
    }
  };

  // Other peers that announce this node's id, by peer id: when each was last heard, and logged.
  const twins = new Map<string, { at: number; loggedAt: number }>();
  const twin = (peer: string) => {
    const now = Date.now();
    for (const [other, t] of twins) if (now - t.at > TWIN_LOG_MS) twins.delete(other); // bounded
    const known = twins.get(peer);
    if (known && now - known.loggedAt < TWIN_LOG_MS) return void (known.at = now);
    twins.set(peer, { at: now, loggedAt: now });
    log.error(
      { node: cluster.self, peer },
      'another relay in the mesh announces this node id: two relays minting under one node id give ' +
        'their messages the same cursors (the mesh takes one of them for an impostor, the stores ' +
        'refuse or overwrite). Was a data folder copied? Give the copy its own node-id, peer-key and ' +
        'clock-lease files (delete them and it makes new ones)',
    );
  };
  const liveTwins = () =>
    [...twins].filter(([, t]) => Date.now() - t.at <= memberTimeoutMs(cadence, beatMs)).map(([peer]) => peer);

  const onMessage = (event: CustomEvent<Message>) => {
    const message = event.detail;
    if (message.topic !== MEMBERS_TOPIC || message.type !== 'signed') return;
    const beat = heartbeatOf(message.data);
    if (!beat) return;
    const peer = message.from.toString();
    if (beat.node === cluster.self) {
      // Signed by another peer: another relay with this node id.
      if (peer !== host.peerId.toString()) void (beat.leaving ? twins.delete(peer) : twin(peer));
      return;
    }
    if (beat.leaving) {
      seen.delete(peer);
      log.info({ node: beat.node, peer }, 'member left');
    } else {
      if (!seen.has(peer)) log.info({ node: beat.node, peer }, 'member joined');
      const announced = announcedBeatMs(beat.digests);
      const now = Date.now();
      seen.set(peer, { node: beat.node, at: now, beatMs: announced });
      // An older relay drops a member silent past its fixed timeout: beat at its pace from now on.
      if (announced === undefined) nextBeatAt = Math.min(nextBeatAt, now + intervalMs);
      for (const [name, digest] of Object.entries(beat.digests)) {
        const state = cluster.shared().get(name);
        if (state && state.digest() !== digest) void fetchState(peer, name);
      }
    }
    checkSettled();
    apply();
  };

  return {
    async start() {
      startedAt = Date.now();
      lastTick = startedAt;
      settled = false;
      apply();
      const gossip = pubsub();
      gossip.topicValidators.set(MEMBERS_TOPIC, (_peer, message) =>
        heartbeatOf(message.data) ? TopicValidatorResult.Accept : TopicValidatorResult.Reject,
      );
      gossip.addEventListener('message', onMessage);
      gossip.subscribe(MEMBERS_TOPIC);
      await host.handle(
        STATE_PROTOCOL,
        async (stream) => {
          const lp = lpStream(stream, { maxDataLength: 64 * 1024 });
          try {
            const request = JSON.parse(
              decoder.decode((await lp.read({ signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) })).subarray()),
            ) as { name?: unknown };
            const state = typeof request.name === 'string' ? cluster.shared().get(request.name) : undefined;
            const answer = state
              ? { snapshot: state.snapshot() }
              : { error: `no shared state ${String(request.name)}` };
            // The limit is on reads only; every wait is bounded so a paused peer cannot hold a slot.
            await lp.write(encoder.encode(JSON.stringify(answer)), { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
            await stream.close({ signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
          } catch (error) {
            stream.abort(error as Error);
          }
        },
        { runOnLimitedConnection: true, maxInboundStreams: 4 },
      );
      timer = setInterval(tick, intervalMs);
      timer.unref();
      beatNow();
    },

    /** A mesh peer connected (or came back): beat at the next tick, so it hears this node soon. */
    peerUp() {
      nextBeatAt = Math.min(nextBeatAt, Date.now());
    },

    /**
     * A mesh peer's connection closed: if it was a member, it is gone now. Beat at the next tick:
     * if the peer is still alive and reaches the mesh another way, it does the same, and each
     * hears the other again by gossip rather than after the other's next (maybe slow) beat.
     */
    peerDown(peer: string) {
      if (!seen.delete(peer)) return;
      nextBeatAt = Math.min(nextBeatAt, Date.now());
      log.info({ peer }, 'member lost (connection closed)');
      apply();
    },

    /** Tell the others this node is leaving, so they take its work over at once. */
    async stop() {
      stopped = true;
      clearInterval(timer);
      await Promise.race([send(heartbeat(true)), new Promise((r) => setTimeout(r, 500))]);
      pubsub().removeEventListener('message', onMessage);
      await host.unhandle(STATE_PROTOCOL).catch(() => {});
    },

    status: () => {
      const peers = liveTwins();
      return { members: cluster.members(), settled, ...(peers.length > 0 ? { twins: peers } : {}) };
    },
  };
}
