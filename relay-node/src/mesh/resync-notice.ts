import type { PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import type { Logger } from '../logger.ts';
import type { Host } from './host.ts';

/**
 * Resync notices (`/anode/resync/1.0.0`): this node tells a peer "you may have missed my gossip
 * since `since` (ms since the epoch, my clock): catch up from me from there". One request frame
 * `{"since":<ms>}` (varint-length-prefixed JSON), no answer; the peer catches up from the sender
 * from `since` minus its lookback.
 *
 * Why: only the sending side knows what gossip it failed to deliver (a stream reset because the
 * peer stopped reading, a batch whose publish failed for good). The peer's own watermark moves on
 * with its answered pings, which travel on their own stream and so overtake gossip stuck behind
 * a full window; without a notice it would never ask for what was dropped, or not from far enough
 * back. A notice owed to a peer is kept (the earliest `since`) and sent while the peer is
 * connected, retried every few seconds until it goes through; a peer that does not speak the
 * protocol is not asked again.
 */
export const RESYNC_PROTOCOL = '/anode/resync/1.0.0';
const TIMEOUT_MS = 15_000;
const RETRY_MS = 2_000;
/**
 * A notice not delivered and not owed again in this long is dropped: the peer is most likely gone
 * for good (a peer that comes back later catches up from its own watermark only, and may miss what
 * the notice was for).
 */
const OWED_TTL_MS = 10 * 60_000;
const MAX_OWED = 10_000;
/** A `since` further ahead of this node's clock is refused. */
const MAX_AHEAD_MS = 60_000;
/**
 * An earlier `since` is raised to this far back: a notice is owed for at most OWED_TTL_MS after the
 * loss it reports was last seen, and the margin covers clock skew and a loss noticed late. Without
 * it any member could make this node fetch all of its history with `since: 0`.
 */
export const MAX_NOTICE_AGE_MS = OWED_TTL_MS + 5 * 60_000;
/** A peer's notices are taken at most once this often, but for one asking from further back. */
export const NOTICE_INTERVAL_MS = 5_000;
const MAX_TRACKED_SENDERS = 10_000;

/**
 * Which notices a receiver acts on, and from when: `since` a safe integer, not below 0 nor ahead of
 * the clock by more than MAX_AHEAD_MS, raised to now − MAX_NOTICE_AGE_MS. A peer's notices are acted
 * on at most once per NOTICE_INTERVAL_MS (each sets the watermark back and forces a catch-up), but
 * for one asking from further back than the last: the others within the interval are merged into
 * one, acted on when it ends (dropping them could lose what a later loss left behind a catch-up
 * that already ran).
 */
export function createNoticeGate(act: (peer: string, since: number) => void, now: () => number = Date.now) {
  const taken = new Map<string, { at: number; since: number; later?: number; timer?: ReturnType<typeof setTimeout> }>();
  const take = (peer: string, since: number) => {
    const last = taken.get(peer);
    if (last?.timer === undefined && taken.size >= MAX_TRACKED_SENDERS) {
      for (const [id, entry] of taken)
        if (entry.timer === undefined && now() - entry.at >= NOTICE_INTERVAL_MS) taken.delete(id);
    }
    if (last?.timer === undefined && taken.size >= MAX_TRACKED_SENDERS) return;
    taken.set(peer, { at: now(), since, later: last?.later, timer: last?.timer });
    act(peer, since);
  };
  return {
    take(peer: string, since: unknown): void {
      const at = now();
      if (typeof since !== 'number' || !Number.isSafeInteger(since) || since < 0 || since > at + MAX_AHEAD_MS) return;
      const from = Math.max(since, at - MAX_NOTICE_AGE_MS);
      const last = taken.get(peer);
      if (!last || at - last.at >= NOTICE_INTERVAL_MS || from < last.since) return take(peer, from);
      last.later = Math.min(last.later ?? from, from);
      last.timer ??= setTimeout(
        () => {
          const entry = taken.get(peer);
          if (!entry) return;
          const later = entry.later as number;
          entry.later = undefined;
          entry.timer = undefined;
          take(peer, later);
        },
        Math.max(0, last.at + NOTICE_INTERVAL_MS - at),
      );
      last.timer.unref?.();
    },
    stop(): void {
      for (const entry of taken.values()) clearTimeout(entry.timer);
      taken.clear();
    },
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export interface ResyncNoticeOptions {
  host: Host;
  log: Logger;
  /** `peer` says this node may have missed its gossip since `since`: catch up from it. */
  onNotice(peer: string, since: number): void;
}

export function createResyncNotices(options: ResyncNoticeOptions) {
  const { host, log } = options;
  // Peer -> the earliest `since` owed to it, and when it was last owed.
  const owed = new Map<string, { since: number; at: number }>();
  let lastFullWarning = Number.NEGATIVE_INFINITY;
  const gate = createNoticeGate((peer, since) => options.onNotice(peer, since));
  const sending = new Set<string>();
  let timer: ReturnType<typeof setInterval> | undefined;
  let stopped = false;

  const connected = (peer: string) =>
    host.getConnections().some((c) => c.remotePeer.toString() === peer && c.status === 'open');

  const speaks = async (peer: string) => {
    try {
      const known = await host.peerStore.get(peerIdFromString(peer) as PeerId);
      return known.protocols.includes(RESYNC_PROTOCOL);
    } catch {
      return false;
    }
  };

  const deliver = async (peer: string) => {
    const entry = owed.get(peer);
    if (stopped || !entry || sending.has(peer) || !connected(peer)) return;
    sending.add(peer);
    const { since } = entry;
    let stream: Stream | undefined;
    try {
      const signal = AbortSignal.timeout(TIMEOUT_MS);
      stream = await host.dialProtocol(peerIdFromString(peer) as PeerId, RESYNC_PROTOCOL, {
        runOnLimitedConnection: true,
        signal,
      });
      await lpStream(stream).write(encoder.encode(JSON.stringify({ since })), { signal });
      await stream.close({ signal });
      // Owed again meanwhile from earlier still: keep that one.
      if (owed.get(peer)?.since === since) owed.delete(peer);
      log.info({ peer, since }, 'told a peer to catch up from this node');
    } catch (error) {
      stream?.abort(error as Error);
      // A peer refuses the protocol also between its start and its handler's registration, or
      // while it stops: dropped for good only when it does not list the protocol either.
      if ((error as Error).name === 'UnsupportedProtocolError' && !(await speaks(peer))) owed.delete(peer);
      else log.debug({ err: error, peer }, 'resync notice not delivered; will retry');
    } finally {
      sending.delete(peer);
    }
  };

  return {
    async start(): Promise<void> {
      await host.handle(
        RESYNC_PROTOCOL,
        async (stream, connection) => {
          try {
            const frame = await lpStream(stream, { maxDataLength: 1024 }).read({
              signal: AbortSignal.timeout(TIMEOUT_MS),
            });
            const { since } = JSON.parse(decoder.decode(frame.subarray())) as { since?: unknown };
            await stream.close({ signal: AbortSignal.timeout(TIMEOUT_MS) });
            const peer = connection.remotePeer.toString();
            if (!stopped) gate.take(peer, since);
          } catch (error) {
            stream.abort(error as Error);
          }
        },
        { runOnLimitedConnection: true, maxInboundStreams: 2 },
      );
      timer = setInterval(() => {
        const now = Date.now();
        for (const [peer, entry] of owed) {
          if (now - entry.at > OWED_TTL_MS) owed.delete(peer);
          else void deliver(peer);
        }
      }, RETRY_MS);
      timer.unref();
    },

    /** `peer` may have missed this node's gossip since `since`: tell it, now or once it can be. */
    owe(peer: string, since: number): void {
      if (stopped) return;
      const entry = owed.get(peer);
      if (entry) {
        entry.since = Math.min(entry.since, since);
        entry.at = Date.now();
      } else if (owed.size < MAX_OWED) owed.set(peer, { since, at: Date.now() });
      else {
        if (Date.now() - lastFullWarning > RETRY_MS) {
          lastFullWarning = Date.now();
          log.warn({ peer, since, owed: owed.size }, 'too many resync notices owed; this one is dropped');
        }
        return;
      }
      void deliver(peer);
    },

    /** A peer (re)connected: deliver what it is owed. */
    peerUp(peer: string): void {
      void deliver(peer);
    },

    async stop(): Promise<void> {
      stopped = true;
      clearInterval(timer);
      gate.stop();
      await host.unhandle(RESYNC_PROTOCOL).catch(() => {});
    },
  };
}

export type ResyncNotices = ReturnType<typeof createResyncNotices>;
