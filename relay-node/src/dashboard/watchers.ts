/**
 * Whether anyone is looking at a dashboard, here or on a peer, so that work done only for the
 * page runs only then. Reading each edge Durable Object's status keeps that object awake (it
 * cannot hibernate while it is asked every few seconds), so the edge objects are read only while
 * a dashboard watches: this relay's own status stream (`local`), or a peer's, which says so in
 * its status-protocol request (`remote`). Only local watching is passed on to peers, so two
 * relays never keep each other "watched" after the pages close.
 */
export const WATCH_WINDOW_MS = 10_000;

export interface Watchers {
  /** A status stream of this relay's own page is open: hold until the returned release. */
  open(): () => void;
  /** A peer said its page is open. */
  touchRemote(): void;
  /** This relay's own page is open. */
  local(): boolean;
  /** A page is open here, or was on a peer within WATCH_WINDOW_MS. */
  any(): boolean;
}

export function createWatchers(now: () => number = Date.now): Watchers {
  let open = 0;
  let remoteAt = Number.NEGATIVE_INFINITY;
  return {
    open() {
      open += 1;
      let released = false;
      return () => {
        if (!released) open -= 1;
        released = true;
      };
    },
    touchRemote() {
      remoteAt = now();
    },
    local: () => open > 0,
    any: () => open > 0 || now() - remoteAt < WATCH_WINDOW_MS,
  };
}
