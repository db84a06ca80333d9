import { z } from 'zod';
import { bool, intIn, list, nonNegativeInt, port, positiveInt, timerMs, timerOrZeroMs } from '../config-fields.ts';
import { DEFAULT_MEMBER_INTERVAL_MS } from './member-cadence.ts';

const multiaddr = z.string().regex(/^\//, 'a multiaddr starts with /');

/**
 * Config keys of the libp2p mesh. The mesh is off unless `mesh` is true or any `listen` or
 * `bootstrap` address is given, so a relay with none of these runs alone as before.
 */
export const meshConfigShape = {
  mesh: bool.default(false).describe('join the libp2p relay mesh (also on when listen or bootstrap is set)'),
  listen: list(multiaddr)
    .default([])
    .describe(
      'mesh listen multiaddrs: TCP, WebSocket (…/tcp/4002/ws), /p2p-circuit and /webrtc behind NAT (default /ip4/127.0.0.1/tcp/0)',
    ),
  announce: list(multiaddr).default([]).describe('multiaddrs to advertise instead of the listen addresses'),
  bootstrap: list(multiaddr).default([]).describe('mesh nodes to join through (repeatable; /p2p/<id> optional)'),
  mesh_key: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits (32 bytes)')
    .optional()
    .describe('private network pre-shared key: 64 hex digits (peers without it cannot connect)'),
  mesh_key_file: z.string().min(1).optional().describe('private network key in a libp2p swarm.key file'),
  mesh_allow: list(z.string().regex(/^[1-9A-HJ-NP-Za-km-z]{40,60}$/, 'not a peer id'))
    .default([])
    .describe(
      'peer ids allowed to connect, your bootstrap and relay nodes included (empty: any peer, or any holding the key)',
    ),
  mesh_open: bool
    .default(false)
    .describe('allow a mesh with neither mesh_key nor mesh_allow while auth is on (any node that reaches it joins)'),
  mesh_public: bool
    .default(false)
    .describe('this node is publicly reachable: serve circuit-relay reservations to NATed nodes'),
  mesh_relay_max_reservations: positiveInt.default(128).describe('circuit-relay reservations served at once'),
  mesh_relay_duration_limit_ms: timerMs
    .default(30 * 60_000)
    .describe('longest a relayed connection may last before it is reset (and redialed)'),
  mesh_relay_data_limit_bytes: positiveInt
    .default(256 * 1024 * 1024)
    .describe('bytes a relayed connection may carry before it is reset (and redialed)'),
  mesh_persist: z
    .enum(['all', 'origin'])
    .default('all')
    .describe(
      'all: store every message carried (full replica); origin: only the accepting node stores (store cassandra only)',
    ),
  mesh_carry: z
    .enum(['all', 'subscribed'])
    .default('all')
    .describe('all: carry every shard; subscribed: only the shards local subscribers need'),
  mesh_shards: intIn(1, 1024).default(32).describe('gossip shard topics (the same on every node)'),
  mesh_stun: list(z.string().regex(/^stuns?:/, 'a stun: URL'))
    .default([])
    .describe('STUN servers for WebRTC (e.g. stun:relay.example:3478)'),
  mesh_stun_port: port.optional().describe('serve STUN binding requests on this UDP port (on public nodes)'),
  mesh_webrtc_bind: z.string().min(1).optional().describe('bind WebRTC ICE to this local address only'),
  mesh_sync_lookback_ms: nonNegativeInt
    .default(30_000)
    .describe('catch-up re-reads this much before the last sync (clock skew and delivery delay)'),
  mesh_startup_sync_ms: timerOrZeroMs
    .default(10_000)
    .describe('how long start waits for the first catch-up from a peer before serving'),
  mesh_discovery_interval_ms: timerMs.default(10_000).describe('how often a node announces itself on the mesh'),
  mesh_ping_interval_ms: timerMs
    .default(10_000)
    .describe(
      'how often peers are pinged; a peer that misses 3 pings in a row (each waited for max(5 s, this)) is dropped',
    ),
  mesh_member_interval_ms: timerMs
    .default(DEFAULT_MEMBER_INTERVAL_MS)
    .describe(
      'how often a node tells the mesh it is alive (who pulls which source follows the live members); above 10 members, × members/10',
    ),
  mesh_member_timeout_ms: timerMs
    .default(5_000)
    .describe(
      'a member silent this long is dead and its sources move to others (a closed connection: at once); a member beating less often (above 10 members) gets as many of its beats',
    ),
  mesh_flood_publish: bool
    .default(true)
    .describe(
      'a publishing node sends its batches to every connected peer of the shard (off: to its gossip mesh only; for very large meshes)',
    ),
  mesh_gossip_batch_ms: intIn(0, 1_000)
    .default(5)
    .describe('a busy node gathers its accepted messages this long into one gossip batch per shard (0: no wait)'),
  mesh_max_message_bytes: positiveInt
    .optional()
    .describe(
      'largest gossip message accepted, envelope and all (larger: rejected, sender scored down; default: max_message_bytes + 64 KiB)',
    ),
};

type MeshKeys = { [K in keyof typeof meshConfigShape]: z.infer<(typeof meshConfigShape)[K]> };

/** Whether the mesh runs for this config (see meshConfigShape). */
export function meshEnabled(config: Pick<MeshKeys, 'mesh' | 'listen' | 'bootstrap'>): boolean {
  return config.mesh || config.listen.length > 0 || config.bootstrap.length > 0;
}

type OpenMeshKeys = Pick<MeshKeys, 'mesh' | 'listen' | 'bootstrap' | 'mesh_allow'> & {
  mesh_key?: string;
  mesh_key_file?: string;
  jwt_secret?: string;
  jwt_public_keys: readonly string[];
  mesh_open?: boolean;
};

/**
 * Whether this mesh admits any node that reaches it while the relay's clients need a token: a
 * member reads all history by catch-up and injects envelopes and source definitions, so such a
 * node would bypass auth entirely.
 */
export function meshOpenWithAuth(config: OpenMeshKeys): boolean {
  const auth = Boolean(config.jwt_secret) || config.jwt_public_keys.length > 0;
  const closed = Boolean(config.mesh_key || config.mesh_key_file) || config.mesh_allow.length > 0;
  return meshEnabled(config) && auth && !closed;
}

/** The one-line refusal for an open mesh with auth on, unless `mesh_open` accepts it. */
export function openMeshRefusal(config: OpenMeshKeys): string | undefined {
  if (!meshOpenWithAuth(config) || config.mesh_open) return undefined;
  return (
    'auth is on but the mesh has neither mesh_key nor mesh_allow, so any node that reaches it could read ' +
    'all history and publish as anyone: set --mesh-key (64 hex digits, the same on every node) or ' +
    '--mesh-allow <peer ids>, or --mesh-open to run an open mesh anyway'
  );
}
