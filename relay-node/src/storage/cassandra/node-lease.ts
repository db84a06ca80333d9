import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type cassandra from 'cassandra-driver';
import { PRIVATE_FILE_MODE } from '../../private-files.ts';

/**
 * One relay per node id on a Cassandra keyspace. Cursors carry the node id that minted them, and
 * history rows are keyed by cursor, so two relays minting under one id (a data folder copied to
 * another machine: a cloned VM, a copied volume) overwrite each other's messages in Cassandra,
 * unseen: each one acked what the other then replaced. (The embedded store refuses the second
 * message visibly; Cassandra upserts.)
 *
 * So each relay holds a lease on its node id: a row in `node_leases` taken with a lightweight
 * transaction and renewed every RENEW_MS with a TTL of LEASE_S. The holder names the host and
 * the data folder, plus a random token that changes at every renewal and is kept in the folder
 * (`tokenFile`): the same relay restarted (same host, same folder, the token it last wrote) takes
 * its lease back at once. A copy is refused once the holder has shown it is alive (it renewed
 * meanwhile), or after the lease would have expired had its holder died: a copy in another folder
 * or on another host, and also a copy on a host of the same name at the same path (a cloned VM),
 * whose token is stale once the original renewed after the copy was made. A clean stop gives the
 * lease up.
 */
export const LEASE_S = 30;
export const RENEW_MS = 10_000;
/** Names written down but not yet confirmed in the row, kept at most (answers lost in a row). */
const MAX_PENDING = 16;

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
  /**
   * Where this relay keeps the holder names it wrote last (in its data folder). Without it the
   * holder name is `holder` alone, and any relay with the same host and folder is this one.
   */
  tokenFile?: string;
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
  const { nodeId, tokenFile } = options;
  const prefix = `${options.holder} #`;
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** The renewal running now (one at a time; a stop waits for it). */
  let tick: Promise<void> | undefined;
  let holding = false;
  let stopped = false;
  let problem: string | undefined;

  /** The name the lease is held under, as far as this relay knows. */
  let holder = options.holder;
  /**
   * Names written down that a statement may have put in the row without this relay learning it
   * (an answer lost), newest last; at start, the names the last run wrote. Cleared once a
   * statement's answer says which name the row holds.
   */
  let pending: string[] = [];
  const save = () => {
    // Released, nothing more is written: the store's close may have stopped waiting for a renewal
    // still running, and the folder be removed or taken by the next run. (A renewal writes its new
    // name down when it starts, before release can stop it: a name sent is always on file.)
    if (!tokenFile || stopped) return;
    const temporary = `${tokenFile}.new`;
    writeFileSync(temporary, JSON.stringify([holder, ...pending]), { mode: PRIVATE_FILE_MODE, flush: true });
    renameSync(temporary, tokenFile);
  };
  /** A new name, written down before any statement can put it in the row (throws if it cannot be). */
  const fresh = () => {
    if (!tokenFile) return options.holder;
    const name = `${prefix}${randomBytes(6).toString('hex')}`;
    pending = [...pending, name].slice(-MAX_PENDING);
    save();
    return name;
  };
  /** A name this relay wrote: its own lease, whatever the answers it missed. */
  const mine = (name: string) =>
    name === options.holder || (name.startsWith(prefix) && (name === holder || pending.includes(name)));
  /** The row holds `name`: the other names no longer matter. */
  const held = (name: string) => {
    holder = name;
    pending = [];
    try {
      save();
    } catch {
      // Not written: the file still names it among the pending ones.
    }
  };

  const claim = async (name: string) =>
    (
      await io.exec(
        `INSERT INTO ${ks}.node_leases (node_id, holder, renewed_at) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?`,
        [nodeId, name, new Date(), leaseS],
      )
    ).first();
  /** Renews the lease held under `from` (this relay's) as `to`; false when the row is gone or another's. */
  const swap = async (from: string, to: string) => {
    const applied =
      (
        await io.exec(
          `UPDATE ${ks}.node_leases USING TTL ? SET holder = ?, renewed_at = ? WHERE node_id = ? IF holder = ?`,
          [leaseS, to, new Date(), nodeId, from],
        )
      ).first()['[applied]'] === true;
    if (applied) held(to);
    return applied;
  };

  const inUse = (other: string, renewedAt: unknown) =>
    new NodeIdInUseError(
      `node id ${nodeId} is in use by another relay on this Cassandra keyspace (${other}, lease renewed ` +
        `${renewedAt instanceof Date ? renewedAt.toISOString() : 'recently'}): two relays minting under one ` +
        'node id overwrite each other’s messages. Was this data folder copied from another relay? Give the ' +
        'copy its own node-id, peer-key and clock-lease files (delete them and it makes new ones)',
    );

  const renew = async () => {
    let next: string;
    try {
      next = fresh();
    } catch {
      next = holder; // the folder cannot be written (disk full): renewed under the same name
    }
    if (await swap(holder, next)) return void (problem = undefined);
    // Gone (this relay was cut off or paused past the TTL): take it again if nobody has.
    const row = await claim(holder);
    if (row['[applied]'] === true) {
      held(holder);
      return void (problem = undefined);
    }
    const other = String(row.holder);
    // A renewal whose answer was lost left one of this relay's names in the row.
    if (mine(other) && (await swap(other, holder))) return void (problem = undefined);
    problem = inUse(other, row.renewed_at).message;
  };
  const schedule = () => {
    timer = setTimeout(() => {
      tick = renew()
        .catch(() => {
          // Cassandra away: the lease runs out on its own; renewing goes on when it is back.
        })
        .finally(() => {
          tick = undefined;
          if (!stopped) schedule();
        });
    }, renewMs);
    timer.unref();
  };
  const keepRenewing = () => {
    holding = true;
    problem = undefined;
    if (!stopped) schedule();
  };

  return {
    async take() {
      stopped = false;
      // The names the last run of this relay wrote (a restart, even after SIGKILL): read now, not
      // when the store was made, as the lease may have been renewed meanwhile.
      if (tokenFile) {
        try {
          const names: unknown = JSON.parse(readFileSync(tokenFile, 'utf8'));
          if (Array.isArray(names)) pending = names.filter((n): n is string => typeof n === 'string');
        } catch {
          // None yet (or unreadable): nothing found in the row is this relay's.
        }
      }
      const name = fresh(); // a folder that cannot be written fails the start here
      let firstSeen: { holder: string; renewedAt: number } | undefined;
      const deadline = Date.now() + leaseS * 1000 + pollMs;
      for (;;) {
        const row = await claim(name);
        if (row['[applied]'] === true) {
          held(name);
          return keepRenewing();
        }
        const other = String(row.holder);
        // This relay's own lease from before a restart: taken back at once.
        if (mine(other)) {
          if (await swap(other, name)) return keepRenewing();
          continue; // it changed meanwhile: look again
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
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
      await tick; // a renewal running now may move the lease to a new name: delete that one
      if (!holding) return;
      holding = false;
      await io.exec(`DELETE FROM ${ks}.node_leases WHERE node_id = ? IF holder = ?`, [nodeId, holder]).catch(() => {});
    },
  };
}
