/**
 * The relays this node works with, as far as work that exactly one of them must do is concerned
 * (pulling a source): the live members by node id, this node included, and small shared state
 * kept in step between them (the admin API's source changes). A lone relay is a cluster of one
 * that is always settled; the mesh drives the view as members come and go.
 */
export interface SharedState {
  /** A short digest of the state: equal digests mean there is nothing to exchange. */
  digest(): string;
  /** The whole state, sent to a member whose digest differs. */
  snapshot(): unknown;
  /** Merge a member's snapshot. Must be commutative and idempotent (last writer wins per key). */
  merge(snapshot: unknown): Promise<void>;
}

export interface Cluster {
  /** This node's member id (its node id). */
  readonly self: string;
  /** Live members, sorted, `self` included. */
  members(): readonly string[];
  /** False while a node that just joined has not heard the members it can see (it owns nothing yet). */
  settled(): boolean;
  /** Called after `members()` or `settled()` changed. Returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
  /** Keep `state` in step with the other members under `name` (nothing to do on a lone relay). */
  share(name: string, state: SharedState): void;

  /** For the mesh: replace the view. Listeners run only on a real change. */
  update(members: readonly string[], settled: boolean): void;
  /** For the mesh: the states to keep in step. */
  shared(): ReadonlyMap<string, SharedState>;
}

export function createCluster(self: string): Cluster {
  let members: readonly string[] = [self];
  let settled = true;
  const listeners = new Set<() => void>();
  const states = new Map<string, SharedState>();
  return {
    self,
    members: () => members,
    settled: () => settled,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    share(name, state) {
      states.set(name, state);
    },
    update(next, nowSettled) {
      const sorted = [...new Set([self, ...next])].sort();
      if (sorted.join('\n') === members.join('\n') && nowSettled === settled) return;
      members = sorted;
      settled = nowSettled;
      for (const listener of listeners) listener();
    },
    shared: () => states,
  };
}
