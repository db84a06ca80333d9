import { createHash } from 'node:crypto';
import type { Cluster } from '../cluster.ts';

/**
 * Which sources this node pulls. On one node it owns them all; in a mesh, each source is owned
 * by exactly one live member (rendezvous hashing), so nothing is polled twice in steady state
 * and a dead member's sources move to the others as soon as the member list drops it.
 */
export interface Ownership {
  isOwner(source: string): boolean;
  /** The member that pulls `source` (undefined while this node has not settled in a mesh). */
  ownerOf(source: string): string | undefined;
  /** Called after the owner of any source may have changed. Returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

export const singleNodeOwnership = (self = 'self'): Ownership => ({
  isOwner: () => true,
  ownerOf: () => self,
  onChange: () => () => {},
});

/** The rendezvous (highest random weight) score of a member for a source. */
export function rendezvousScore(member: string, source: string): bigint {
  return createHash('sha256').update(member).update('\0').update(source).digest().readBigUInt64BE(0);
}

/** The member with the highest score for `source` (ties: the smaller id); undefined if none. */
export function rendezvousOwner(members: readonly string[], source: string): string | undefined {
  let best: string | undefined;
  let bestScore = -1n;
  for (const member of members) {
    const score = rendezvousScore(member, source);
    if (score > bestScore || (score === bestScore && best !== undefined && member < best)) {
      best = member;
      bestScore = score;
    }
  }
  return best;
}

export interface RendezvousOwnership extends Ownership {
  /** Replace the live member list (it should include `self`); notifies on a real change. */
  setMembers(members: readonly string[]): void;
  members(): string[];
  /** The answers of `eligibility` changed: draw every owner again, and notify. */
  refresh(): void;
}

/**
 * Which members can pull a source. A source made through the admin API reaches every member; one
 * from a config file exists only on the members whose file has it, and its owner must be one of
 * them.
 */
export interface Eligibility {
  /** The source is on every member (an admin API definition). */
  everywhere(source: string): boolean;
  /** Otherwise: `member` has it (its config file lists it). */
  holds(member: string, source: string): boolean;
}

/**
 * Ownership by rendezvous hashing over the live members (those of them that can pull the source,
 * with `eligibility`). When a member leaves, only its sources move (each to its next-highest
 * scorer); when one joins, it takes about 1/n of them.
 */
export function createRendezvousOwnership(
  self: string,
  initial: readonly string[] = [self],
  eligibility?: Eligibility,
): RendezvousOwnership {
  let members = [...new Set(initial)].sort();
  // Per source, until the members or the eligibility change; `everywhere` as it was drawn, since
  // an admin change to a config-file source makes it so without a refresh.
  const owners = new Map<string, { owner: string | undefined; everywhere: boolean }>();
  const listeners = new Set<() => void>();
  const ownerOf = (source: string) => {
    const everywhere = !eligibility || eligibility.everywhere(source);
    const known = owners.get(source);
    if (known?.everywhere === everywhere) return known.owner;
    const candidates = everywhere ? members : members.filter((member) => eligibility?.holds(member, source));
    const owner = rendezvousOwner(candidates, source);
    owners.set(source, { owner, everywhere });
    return owner;
  };
  const changed = () => {
    owners.clear();
    for (const listener of listeners) listener();
  };
  return {
    isOwner: (source) => ownerOf(source) === self,
    ownerOf,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    setMembers(next) {
      const sorted = [...new Set(next)].sort();
      if (sorted.join('\n') === members.join('\n')) return;
      members = sorted;
      changed();
    },
    members: () => [...members],
    refresh: changed,
  };
}

/**
 * Ownership over a cluster's live members. Until a node that just joined has settled (heard the
 * members it can see) it owns nothing, so joining never makes two nodes poll one source.
 */
export function clusterOwnership(
  cluster: Cluster,
  eligibility?: Eligibility,
): Ownership & { close(): void; refresh(): void } {
  const rendezvous = createRendezvousOwnership(cluster.self, cluster.members(), eligibility);
  let settled = cluster.settled();
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const listener of listeners) listener();
  };
  rendezvous.onChange(notify);
  const unsubscribe = cluster.onChange(() => {
    const wasSettled = settled;
    settled = cluster.settled();
    rendezvous.setMembers(cluster.members()); // notifies when the list changed
    if (settled !== wasSettled) notify();
  });
  return {
    isOwner: (source) => settled && rendezvous.isOwner(source),
    ownerOf: (source) => (settled ? rendezvous.ownerOf(source) : undefined),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: unsubscribe,
    refresh: rendezvous.refresh,
  };
}
