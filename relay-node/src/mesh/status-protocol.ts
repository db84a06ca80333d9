import type { Connection, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { assertDataDepth } from '@anode/shared';
import type { Logger } from '../logger.ts';
import type { Host } from './host.ts';

/**
 * `/anode/status/1.0.0`: how relays learn each other's status, so any relay's dashboard shows
 * the whole mesh with one admin token. Every `intervalMs` a relay asks each connected mesh peer
 * for its status card: one request `{"v":1,"watching":<bool>}` (whether a dashboard is open on
 * the asking relay; see watchers.ts), one answer (the card, a JSON object), both
 * varint-length-prefixed; the answer is at most MAX_CARD_BYTES, every read, write and close is
 * bounded by TIMEOUT_MS, and at most one request per peer is in flight; requests go over a
 * connection that is already open (the protocol never dials). Only mesh members get
 * an answer: the connection already passed the private-mesh key and the allow-list, and the
 * asking peer must be one this relay counts as a mesh peer (it speaks the catch-up protocol).
 * The card holds no secrets (see relay-card.ts); it is what `/v1/status` shows of the peer.
 *
 * While no dashboard is open on this relay, a round runs only every IDLE_INTERVAL_MS: the cards
 * then serve the remembered-peer view and `/v1/status`, and asking every peer every 2 s cost an
 * idle 25-relay mesh one request per pair of relays each 2 s (300 a second) on top of its work.
 */
export const STATUS_PROTOCOL = '/anode/status/1.0.0';
export const MAX_CARD_BYTES = 256 * 1024;
const MAX_REQUEST_BYTES = 1024;
const TIMEOUT_MS = 5_000;
export const IDLE_INTERVAL_MS = 30_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export interface StatusProtocolOptions {
  host: Host;
  intervalMs: number;
  /** This relay's card (what a peer that asks gets). */
  card: () => Promise<Record<string, unknown>>;
  meshPeers: () => ReadonlySet<string>;
  /** A peer's card arrived. */
  onCard: (peer: string, card: Record<string, unknown>) => void;
  /** Whether this relay's own dashboard is open (sent along: `{"v":1,"watching":true}`). */
  watching: () => boolean;
  /** A peer asked with `watching`. */
  onWatched: () => void;
  log: Logger;
}

export function createStatusProtocol(options: StatusProtocolOptions) {
  const { host, log } = options;
  const inFlight = new Set<string>();
  const errors = new Map<string, string>();
  let timer: ReturnType<typeof setInterval> | undefined;
  let stopped = false;

  const bounded = () => ({ signal: AbortSignal.timeout(TIMEOUT_MS) });

  const serve = async (stream: Stream, connection: Connection) => {
    try {
      if (!options.meshPeers().has(connection.remotePeer.toString())) throw new Error('not a mesh peer');
      const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES });
      const request = JSON.parse(decoder.decode((await lp.read(bounded())).subarray())) as {
        v?: unknown;
        watching?: unknown;
      };
      if (request.v !== 1) throw new Error('unknown status request version');
      if (request.watching === true) options.onWatched();
      const card = encoder.encode(JSON.stringify(await options.card()));
      if (card.byteLength > MAX_CARD_BYTES) throw new Error('status card too large');
      await lp.write(card, bounded());
      await stream.close(bounded());
    } catch (error) {
      stream.abort(error as Error);
    }
  };

  const ask = async (peer: string) => {
    if (inFlight.has(peer)) return;
    inFlight.add(peer);
    let stream: Stream | undefined;
    try {
      // Over a connection that is already open, never a new dial: with only a limited (relayed)
      // connection, a dial opens another one (two WebRTC connections when both sides ask at once).
      const open = host.getConnections(peerIdFromString(peer)).filter((c) => c.status === 'open');
      const connection = open.find((c) => c.limits === undefined) ?? open[0];
      if (!connection) throw new Error('not connected');
      stream = await connection.newStream(STATUS_PROTOCOL, { runOnLimitedConnection: true, ...bounded() });
      const lp = lpStream(stream, { maxDataLength: MAX_CARD_BYTES });
      await lp.write(encoder.encode(JSON.stringify({ v: 1, watching: options.watching() })), bounded());
      const card: unknown = JSON.parse(decoder.decode((await lp.read(bounded())).subarray()));
      await stream.close(bounded());
      if (typeof card !== 'object' || card === null || Array.isArray(card)) throw new Error('card is not an object');
      // Kept and shown in /v1/status and peers.json: one nested past what JSON.stringify recurses
      // through (about 4,400 levels; 256 KiB hold 100,000) made /v1/status answer 500 and
      // mesh-peers.json unsavable while it was kept.
      try {
        assertDataDepth(card);
      } catch (error) {
        // Nested deeper than MAX_DATA_DEPTH, or (the same walk) holding a number JSON cannot carry.
        // The reason in the message, shown as the peer's status_error; as a cause too, the log
        // line said it twice.
        // eslint-disable-next-line preserve-caught-error
        throw new Error(`card refused: ${(error as Error).message}`);
      }
      errors.delete(peer);
      options.onCard(peer, card as Record<string, unknown>);
    } catch (error) {
      stream?.abort(error as Error);
      if (!stopped) {
        errors.set(peer, (error as Error).message);
        log.debug({ err: error, peer }, 'status request to a mesh peer failed');
      }
    } finally {
      inFlight.delete(peer);
    }
  };

  let lastRound = Number.NEGATIVE_INFINITY;
  const round = () => {
    const now = Date.now();
    if (!options.watching() && now - lastRound < IDLE_INTERVAL_MS) return;
    lastRound = now;
    for (const peer of options.meshPeers()) void ask(peer);
    for (const peer of errors.keys()) if (!options.meshPeers().has(peer)) errors.delete(peer);
  };

  return {
    async start() {
      await host.handle(STATUS_PROTOCOL, serve, {
        runOnLimitedConnection: true,
        maxInboundStreams: 2,
      });
      timer = setInterval(round, options.intervalMs);
      timer.unref();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await host.unhandle(STATUS_PROTOCOL).catch(() => {});
    },
    /** The last failure per connected peer, for the status. */
    errorOf: (peer: string) => errors.get(peer),
  };
}
