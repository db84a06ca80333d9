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
 * This reads gossipsub's internal stream maps; if a gossipsub version lacks them, the watchdog
 * does nothing rather than guess.
 */
interface GossipInternals {
  peers: Map<string, unknown>;
  streamsOutbound: Map<string, unknown>;
  streamsInbound: Map<string, unknown>;
}

const CHECK_MS = 2_000;
const STRIKES_BEFORE_RESET = 3;

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
    return { stop() {} };
  }
  const { peers, streamsOutbound, streamsInbound } = internals as GossipInternals;

  const check = () => {
    const seen = new Set<string>();
    for (const peer of meshPeers()) {
      seen.add(peer);
      const open = host.getConnections().filter((c) => c.remotePeer.toString() === peer && c.status === 'open');
      if (open.length === 0 || (peers.has(peer) && streamsOutbound.has(peer) && streamsInbound.has(peer))) {
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
      log.warn({ peer }, 'gossip streams to a peer are broken; reconnecting to it');
      strikes.delete(peer);
      for (const connection of open) connection.close().catch(() => {});
    }
    for (const peer of strikes.keys()) if (!seen.has(peer)) strikes.delete(peer);
  };

  const timer = setInterval(check, CHECK_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
