import type { Logger } from '../logger.ts';
import type { Host } from './host.ts';

/**
 * A watchdog for gossipsub's per-peer streams. Gossipsub keeps one stream each way per peer;
 * when the connection carrying them closes while another to the same peer stays open (a relayed
 * connection replaced by WebRTC, a relay limit reached), the two sides can end up with a stream
 * one of them no longer reads, and messages stop flowing one way with nothing noticing. So every
 * few seconds each mesh peer is checked for both streams; a peer missing one is re-identified
 * (which makes gossipsub open its stream again), and one still missing it after that has all its
 * connections closed, so that both sides start afresh when it reconnects (keep-alive, bootstrap
 * or discovery redial it).
 *
 * Every gossipsub peer is watched, not only relays: a plain libp2p peer whose message-size limit
 * is below ours resets our stream after one large message and drops us as a gossip peer, while
 * the connection stays up; without the watchdog we would keep it in the mesh and never send it
 * anything again. And when gossip finds no stream to a subscribed peer while publishing
 * (`undelivered`), the link is cut at once, not after the strikes: the peer misses gossip until
 * it is, and catches up from us when it reconnects.
 *
 * This reads gossipsub's internal stream maps; if a gossipsub version lacks them, the watchdog
 * does nothing rather than guess.
 */
interface RawStream {
  status?: string;
  remoteWriteStatus?: string;
  writeBuffer?: { byteLength: number };
}
interface GossipInternals {
  peers: Map<string, unknown>;
  streamsOutbound: Map<string, { rawStream?: RawStream }>;
  streamsInbound: Map<string, { rawStream?: RawStream }>;
}

/**
 * Whether a gossipsub stream is there and still carries data. A peer that gives up on us (a
 * message above its size limit, say) closes its side: our stream then looks open for writing
 * while everything written to it is thrown away, and only the remote's closed write end shows it
 * (gossip streams are never closed by a healthy peer).
 */
const usableStream = (stream: { rawStream?: RawStream } | undefined) =>
  stream !== undefined &&
  (stream.rawStream === undefined ||
    (stream.rawStream.status === 'open' && stream.rawStream.remoteWriteStatus !== 'closed'));

/** Whether gossipsub can still send to `peer` (unknown internals: assume it can). */
export function canGossipTo(pubsub: unknown, peer: string): boolean {
  const outbound = (pubsub as Partial<GossipInternals>).streamsOutbound;
  return !(outbound instanceof Map) || usableStream(outbound.get(peer));
}

/**
 * Whether everything gossipsub wrote to `peer` has left this node: its stream is usable and its
 * write buffer is empty (a peer that stops reading fills it). A stream missing or gone bad does not
 * count: libp2p empties the buffer of a stream it aborts or the remote closed, so an empty buffer
 * says nothing there about what was sent. Unknown internals: assume it has.
 */
export function sentAll(pubsub: unknown, peer: string): boolean {
  if (!canGossipTo(pubsub, peer)) return false;
  const outbound = (pubsub as Partial<GossipInternals>).streamsOutbound;
  const buffered = outbound instanceof Map ? outbound.get(peer)?.rawStream?.writeBuffer?.byteLength : undefined;
  return buffered === undefined || buffered === 0;
}

const CHECK_MS = 2_000;
const STRIKES_BEFORE_RESET = 3;
/** A connection younger than this may still be opening its gossip streams. */
const SETTLING_MS = 2_000;

export function watchGossipLinks(
  host: Host,
  meshPeers: () => Iterable<string>,
  log: Logger,
  /** Called when a peer's streams were found broken: what it sent meanwhile may be lost. */
  onBroken: (peer: string) => void = () => {},
) {
  const internals = host.services.pubsub as unknown as Partial<GossipInternals>;
  const usable = [internals.peers, internals.streamsOutbound, internals.streamsInbound].every((m) => m instanceof Map);
  const strikes = new Map<string, number>();
  if (!usable) {
    log.warn('gossipsub internals not found: the gossip link watchdog is off');
    return { stop() {}, undelivered() {} };
  }
  const { peers, streamsOutbound, streamsInbound } = internals as GossipInternals;

  const openTo = (peer: string) =>
    host.getConnections().filter((c) => c.remotePeer.toString() === peer && c.status === 'open');
  const reset = (peer: string, why: string) => {
    log.warn({ peer, why }, 'gossip streams to a peer are broken; reconnecting to it');
    strikes.delete(peer);
    for (const connection of openTo(peer)) connection.close().catch(() => {});
  };
  const lastReset = new Map<string, number>();

  const check = () => {
    const seen = new Set<string>();
    for (const peer of new Set([...meshPeers(), ...peers.keys()])) {
      seen.add(peer);
      const open = openTo(peer);
      if (
        open.length === 0 ||
        (peers.has(peer) && usableStream(streamsOutbound.get(peer)) && usableStream(streamsInbound.get(peer)))
      ) {
        strikes.delete(peer);
        continue;
      }
      const count = (strikes.get(peer) ?? 0) + 1;
      strikes.set(peer, count);
      if (count === 1) onBroken(peer);
      const best = open.find((c) => c.limits === undefined) ?? open[0];
      if (count < STRIKES_BEFORE_RESET) {
        const identify = host.services.identify as { identify(c: unknown): Promise<unknown> };
        if (best) identify.identify(best).catch(() => {});
        continue;
      }
      reset(peer, 'a stream missing for three checks');
    }
    for (const peer of strikes.keys()) if (!seen.has(peer)) strikes.delete(peer);
    for (const peer of lastReset.keys()) if (!seen.has(peer)) lastReset.delete(peer);
  };

  const timer = setInterval(check, CHECK_MS);
  timer.unref();
  return {
    stop: () => clearInterval(timer),

    /** Gossip found no stream to `peer` while publishing: cut the link now (once per settling time). */
    undelivered(peer: string): void {
      const open = openTo(peer);
      const now = Date.now();
      if (open.length === 0 || now - (lastReset.get(peer) ?? 0) < SETTLING_MS) return;
      // A young connection may just not have its stream yet: the checks above see to it.
      if (open.every((c) => now - c.timeline.open < SETTLING_MS)) return;
      lastReset.set(peer, now);
      onBroken(peer);
      reset(peer, 'no gossip stream while publishing');
    },
  };
}

export type GossipLinks = ReturnType<typeof watchGossipLinks>;
