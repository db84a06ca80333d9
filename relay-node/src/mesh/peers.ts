import { type Connection, KEEP_ALIVE, type PeerId } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import type { Logger } from '../logger.ts';
import { CATCH_UP_PROTOCOL } from './catch-up.ts';
import type { Host } from './host.ts';

/**
 * Keeping this node in the mesh: dial the bootstrap addresses (and redial them with backoff
 * whenever they are not connected), dial every peer discovery announces, move a relayed
 * connection to WebRTC when the peer listens on WebRTC, and tell the caller when a mesh peer (one
 * that serves catch-up) comes and goes. Dead peers are noticed by libp2p's connection monitor
 * (a failed ping aborts the connection); discovered peers are tagged keep-alive, so libp2p
 * redials them with backoff too.
 */
export interface PeerManagerOptions {
  bootstrap: readonly string[];
  log: Logger;
  onMeshPeer(peer: string, up: boolean): void;
  /** The gossip streams to a still-connected peer were cut: what was sent meanwhile may be lost. */
  onLinkInterrupted(peer: string): void;
}

export type ConnectionKind = 'direct' | 'relayed' | 'webrtc';

/**
 * One configured bootstrap address as the status shows it: connected or not, since when (the
 * start, the loss or the connection), and the last failure, the same text the log has (no key).
 */
export interface BootstrapState {
  address: string;
  connected: boolean;
  since: number;
  error: string | null;
}

export function connectionKind(connection: Connection): ConnectionKind {
  const addr = connection.remoteAddr.toString();
  if (addr.includes('/webrtc')) return 'webrtc';
  return addr.includes('/p2p-circuit') ? 'relayed' : 'direct';
}

const MAX_BACKOFF_MS = 30_000;
const CHECK_CONNECTED_MS = 5_000;
const DISCOVERY_DIAL_DELAY_MS = 3_000;

/**
 * What to check when a bootstrap dial fails. A relay reached whose mesh key differs (or one of
 * the two has none) garbles the connection's handshake, which libp2p reports only as
 * `EncryptionFailedError: read ECONNRESET` (or a bad message length): nothing named the key. The
 * key itself is never logged.
 */
function bootstrapDialHint(error: unknown): string {
  if ((error as Error | undefined)?.name !== 'EncryptionFailedError') return '';
  // Noise's own refusal of a peer whose key is not the one the address names (a `/p2p/` id of the
  // relay's earlier data_dir, say) comes wrapped the same way: the mesh keys matched.
  if (/does not match expected remote identity key/i.test(errorText(error))) {
    return (
      ': the relay at that address is another peer than its /p2p/ id names (was its data_dir reset?): ' +
      "take the address from that relay's /v1/status (node.multiaddrs)"
    );
  }
  return (
    ': the address answered but the handshake failed, as when the two relays have different mesh keys: ' +
    'check that mesh_key (or mesh_key_file) is the same on both relays, or unset on both, ' +
    "and that the address is the other relay's mesh listen address"
  );
}

/** An error's message with its causes' (libp2p wraps the handshake's reason). */
function errorText(error: unknown): string {
  const parts: string[] = [];
  for (let at: unknown = error, n = 0; at instanceof Error && n < 5; at = at.cause, n++) parts.push(at.message);
  return parts.join(': ');
}

/** libp2p's refusal of a connection that turned out to reach this node itself. */
const isSelfDial = (error: unknown) =>
  (error as Error | undefined)?.name === 'InvalidPeerIdError' && /dial self/.test((error as Error).message);

/** The failure as the status carries it: the log's message and hint, after the error's own words. */
function bootstrapFailure(error: unknown): string {
  const { name, message } = error instanceof Error ? error : { name: 'Error', message: String(error) };
  return `bootstrap dial failed: ${name}${message ? `: ${message}` : ''}${bootstrapDialHint(error)}`;
}

export function createPeerManager(host: Host, options: PeerManagerOptions) {
  const { log } = options;
  const self = host.peerId.toString();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const dialing = new Set<string>();
  const upgrading = new Set<string>();
  let stopped = false;

  const later = (ms: number, run: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopped) run();
    }, ms);
    timers.add(timer);
  };
  const isConnected = (peer: PeerId | string) =>
    host.getConnections().some((c) => c.remotePeer.toString() === peer.toString() && c.status === 'open');
  const keepAlive = (peer: PeerId) =>
    host.peerStore.merge(peer, { tags: { [KEEP_ALIVE]: { value: 1 } } }).catch(() => {});

  /** Per configured bootstrap address (not this node's own), for the status. */
  const bootstraps = new Map<string, BootstrapState & { peer: string | undefined }>();
  const mark = (state: BootstrapState, connected: boolean, error: string | null) => {
    if (state.connected !== connected) state.since = Date.now();
    state.connected = connected;
    state.error = connected ? null : error;
  };

  const bootstrapLoop = (address: string) => {
    const peer = /\/p2p\/([^/]+)$/.exec(address)?.[1];
    if (peer === self) return;
    const state = { address, peer, connected: false, since: Date.now(), error: null as string | null };
    bootstraps.set(address, state);
    let attempt = 0;
    const step = async () => {
      if (state.peer && isConnected(state.peer)) {
        mark(state, true, null);
        return later(CHECK_CONNECTED_MS, step);
      }
      try {
        const connection = await host.dial(multiaddr(address), { signal: AbortSignal.timeout(10_000) });
        state.peer = connection.remotePeer.toString();
        attempt = 0;
        mark(state, true, null);
        await keepAlive(connection.remotePeer);
        log.info({ address, peer: state.peer }, 'connected to bootstrap node');
        later(CHECK_CONNECTED_MS, step);
      } catch (error) {
        const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt++) * (0.75 + Math.random() / 2);
        log[attempt === 1 ? 'warn' : 'debug'](
          { address, err: error, retryInMs: Math.round(delay) },
          `bootstrap dial failed${bootstrapDialHint(error)}`,
        );
        // The address is this node's own (no /p2p/ id in it, as in a config shared by every
        // relay): not a peer that is missing.
        if (isSelfDial(error)) bootstraps.delete(address);
        else mark(state, false, bootstrapFailure(error));
        later(delay, step);
      }
    };
    void step();
  };

  const LOST = 'the connection to it was lost';
  /** A bootstrap peer's last connection closed: not connected from now, until a redial succeeds. */
  const bootstrapLost = (peer: string) => {
    for (const state of bootstraps.values()) if (state.peer === peer && state.connected) mark(state, false, LOST);
  };

  /**
   * A peer identified on a connection (its own dial to this node, say, after it restarted): the
   * bootstrap address it listens on, or whose /p2p/ id it is, is connected now, not only at this
   * node's next redial (up to ~40 s of backoff away, the page meanwhile naming a connected peer
   * unreachable).
   */
  const bootstrapIdentified = (peer: string, listenAddrs: readonly string[]) => {
    const bare = (address: string) => address.replace(/\/p2p\/[^/]+$/, '');
    const listening = new Set(listenAddrs.map(bare));
    for (const state of bootstraps.values()) {
      if (state.connected) continue;
      if (state.peer === peer || (state.peer === undefined && listening.has(bare(state.address)))) {
        state.peer = peer;
        mark(state, true, null);
      }
    }
  };

  const dialDiscovered = async (peer: PeerId, first = true) => {
    const id = peer.toString();
    if (stopped || id === self || dialing.has(id) || isConnected(id)) return;
    // When two peers discover each other at once, the lower id dials and the other waits to see
    // whether it did, so they do not open two connections (two WebRTC sessions, say).
    if (first && self > id) return later(DISCOVERY_DIAL_DELAY_MS, () => void dialDiscovered(peer, false));
    dialing.add(id);
    try {
      await host.dial(peer, { signal: AbortSignal.timeout(15_000) });
      await keepAlive(peer);
    } catch (error) {
      log.debug({ peer: id, err: error }, 'dial of a discovered peer failed');
    } finally {
      dialing.delete(id);
    }
  };

  /**
   * Close (gracefully) the relayed connections to a peer that also has an unlimited one. Streams
   * on them end cleanly and reopen on the better connection; had the relay cut them instead,
   * gossipsub could drop the peer while the other connection stays up.
   */
  const dropRelayed = async (peer: PeerId) => {
    const open = host.getConnections(peer).filter((c) => c.status === 'open');
    if (!open.some((c) => c.limits === undefined)) return;
    for (const relayed of open) if (relayed.limits !== undefined) await relayed.close().catch(() => {});
  };

  /** Only relayed to a peer that listens on WebRTC: open a WebRTC connection, then drop the relay. */
  const maybeUpgrade = async (peer: PeerId, listenAddrs: readonly { toString(): string }[]) => {
    const id = peer.toString();
    const open = host.getConnections(peer).filter((c) => c.status === 'open');
    if (open.length === 0 || open.some((c) => connectionKind(c) !== 'relayed')) return;
    // One side dials, so the two do not race each other into two connections.
    if (self > id || upgrading.has(id)) return;
    const webrtc = listenAddrs.map(String).find((a) => a.includes('/p2p-circuit/webrtc'));
    if (!webrtc) return;
    upgrading.add(id);
    try {
      const target = webrtc.includes('/p2p/' + id) ? webrtc : `${webrtc}/p2p/${id}`;
      const connection = await host.dial(multiaddr(target), { signal: AbortSignal.timeout(20_000) });
      log.info({ peer: id, kind: connectionKind(connection) }, 'upgraded a relayed connection');
      await dropRelayed(peer);
    } catch (error) {
      log.info({ peer: id, err: error }, 'WebRTC upgrade failed; staying relayed');
    } finally {
      upgrading.delete(id);
    }
  };

  /**
   * A connection closed but the peer is still connected by another: identify again on that one,
   * which makes gossipsub (and the rest) open their streams on it. Gossipsub drops what it sends
   * while a peer has no stream, so once the new streams are up, catch up from the peer too.
   */
  const heal = (connection: Connection) => {
    later(50, () => {
      const remaining = host.getConnections(connection.remotePeer).find((c) => c.status === 'open');
      if (!remaining) return;
      const identify = host.services.identify as { identify(c: Connection): Promise<unknown> };
      identify.identify(remaining).catch((error: unknown) => log.debug({ err: error }, 're-identify failed'));
      later(1_000, () => options.onLinkInterrupted(connection.remotePeer.toString()));
    });
  };

  const listeners: [string, (event: CustomEvent) => void][] = [
    ['peer:discovery', (event) => void dialDiscovered((event.detail as { id: PeerId }).id)],
    [
      'peer:identify',
      (event) => {
        const { peerId, protocols, listenAddrs } = event.detail as {
          peerId: PeerId;
          protocols: string[];
          listenAddrs: { toString(): string }[];
        };
        if (protocols.includes(CATCH_UP_PROTOCOL)) options.onMeshPeer(peerId.toString(), true);
        bootstrapIdentified(peerId.toString(), listenAddrs.map(String));
        void maybeUpgrade(peerId, listenAddrs);
      },
    ],
    [
      'peer:disconnect',
      (event) => {
        bootstrapLost((event.detail as PeerId).toString());
        options.onMeshPeer((event.detail as PeerId).toString(), false);
      },
    ],
    ['connection:open', (event) => void dropRelayed((event.detail as Connection).remotePeer)],
    ['connection:close', (event) => heal(event.detail as Connection)],
  ];

  return {
    start(): void {
      for (const [name, listener] of listeners) host.addEventListener(name as 'peer:connect', listener);
      for (const address of options.bootstrap) bootstrapLoop(address);
    },
    stop(): void {
      stopped = true;
      for (const [name, listener] of listeners) host.removeEventListener(name as 'peer:connect', listener);
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
    /** Every configured bootstrap address, connected or not (checked now, not at the last redial). */
    bootstrapStatus(): BootstrapState[] {
      return [...bootstraps.values()].map((state) => {
        const up = state.peer !== undefined && isConnected(state.peer);
        if (state.connected !== up) mark(state, up, LOST);
        return { address: state.address, connected: state.connected, since: state.since, error: state.error };
      });
    },
  };
}
