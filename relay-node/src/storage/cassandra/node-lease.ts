import type cassandra from 'cassandra-driver';

/**
 * One relay per node id on a Cassandra keyspace. Cursors carry the node id that minted them, and
 * history rows are keyed by cursor, so two relays minting under one id (a data folder copied to
 * another machine: a cloned VM, a copied volume) overwrite each other's messages in Cassandra,
 * unseen: each one acked what the other then replaced. (The embedded store refuses the second
 * message visibly; Cassandra upserts.)
 *
 * So each relay holds a lease on its node id: a row in `node_leases` taken with a lightweight
 * transaction and renewed every RENEW_MS with a TTL of LEASE_S. The holder names the host and
 * the data folder: the same relay restarted (same host, same folder) takes its lease back at
 * once; a copy elsewhere finds it held and is refused, once the holder has shown it is alive
 * (it renewed meanwhile), or after the lease would have expired had its holder died. A clean stop
 * gives the lease up.
 */
export const LEASE_S = 30;
export const RENEW_MS = 10_000;

export class NodeIdInUseError extends Error {
  readonly code = 'node_id_in_use';
}

export interface LeaseIo {
  /** A conditional statement (serial consistency) or a read; resolves with its rows. */
  exec(query: string, params: unknown[]): Promise<cassandra.types.ResultSet>;
}

export interface NodeLeaseOptions {
  keyspace: string;
  nodeId: string;
  /** Who holds it: this relay's host and data folder. */
  holder: string;
  leaseS?: number;
  renewMs?: number;
  /** How often a held lease is looked at again while waiting for it (default 1 s). */
  pollMs?: number;
}

export interface NodeLease {
  /** Takes the lease, waiting out a dead holder's; throws NodeIdInUseError for a live one. */
  take(): Promise<void>;
  /** Why the lease is not held (lost to another holder), or undefined. */
  readonly problem: string | undefined;
  /** Stops renewing and gives the lease up (best effort). */
  release(): Promise<void>;
}

export function createNodeLease(io: LeaseIo, options: NodeLeaseOptions): NodeLease {
  const ks = options.keyspace;
  const leaseS = options.leaseS ?? LEASE_S;
  const renewMs = options.renewMs ?? RENEW_MS;
  const pollMs = options.pollMs ?? 1_000;
  const { nodeId, holder } = options;
  let timer: ReturnType<typeof setInterval> | undefined;
  let held = false;
  let problem: string | undefined;

  const claim = async () =>
    (
      await io.exec(
        `INSERT INTO ${ks}.node_leases (node_id, holder, renewed_at) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?`,
        [nodeId, holder, new Date(), leaseS],
      )
    ).first();
  /** Renews our own lease; false when the row is gone or another holder has it. */
  const renew = async () =>
    (
      await io.exec(
        `UPDATE ${ks}.node_leases USING TTL ? SET holder = ?, renewed_at = ? WHERE node_id = ? IF holder = ?`,
        [leaseS, holder, new Date(), nodeId, holder],
      )
    ).first()['[applied]'] === true;

  const inUse = (other: string, renewedAt: unknown) =>
    new NodeIdInUseError(
      `node id ${nodeId} is in use by another relay on this Cassandra keyspace (${other}, lease renewed ` +
        `${renewedAt instanceof Date ? renewedAt.toISOString() : 'recently'}): two relays minting under one ` +
        'node id overwrite each other’s messages. Was this data folder copied from another relay? Give the ' +
        'copy its own node-id, peer-key and clock-lease files (delete them and it makes new ones)',
    );

  const keepRenewing = () => {
    held = true;
    problem = undefined;
    clearInterval(timer);
    timer = setInterval(() => {
      void (async () => {
        try {
          if (await renew()) return void (problem = undefined);
          // Gone (this relay was cut off or paused past the TTL): take it again if nobody has.
          const row = await claim();
          if (row['[applied]'] === true || row.holder === holder) return void (problem = undefined);
          problem = inUse(String(row.holder), row.renewed_at).message;
        } catch {
          // Cassandra away: the lease runs out on its own; renewing goes on when it is back.
        }
      })();
    }, renewMs);
    timer.unref();
  };

  return {
    async take() {
      let firstSeen: { holder: string; renewedAt: number } | undefined;
      const deadline = Date.now() + leaseS * 1000 + pollMs;
      for (;;) {
        const row = await claim();
        if (row['[applied]'] === true) return keepRenewing();
        const other = String(row.holder);
        if (other === holder) {
          await renew();
          return keepRenewing();
        }
        const renewedAt = row.renewed_at instanceof Date ? row.renewed_at.getTime() : 0;
        // Renewed since we first looked: its holder is alive.
        if (firstSeen && (firstSeen.holder !== other || renewedAt > firstSeen.renewedAt)) {
          throw inUse(other, row.renewed_at);
        }
        firstSeen ??= { holder: other, renewedAt };
        if (Date.now() >= deadline) throw inUse(other, row.renewed_at);
        await new Promise((r) => setTimeout(r, pollMs));
      }
    },
    get problem() {
      return problem;
    },
    async release() {
      clearInterval(timer);
      timer = undefined;
      if (!held) return;
      held = false;
      await io.exec(`DELETE FROM ${ks}.node_leases WHERE node_id = ? IF holder = ?`, [nodeId, holder]).catch(() => {});
    },
  };
}
