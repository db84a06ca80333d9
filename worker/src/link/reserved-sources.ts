import { ForbiddenError, UnavailableError } from '@anode/shared';
import type { LinkStore } from './link-store.ts';

/**
 * The source names the mesh reserves (the sources its relays pull: PROTOCOL.md, Auth), as the
 * relay last told this object over its link (`reserved` frame). A relay refuses a message under
 * one of them, and what the edge had acked would then be lost, so a linked object checks every
 * publish against them before it acks. Kept in storage: a hibernated object, or one whose link
 * is down or idle-closed, still checks against the last list it heard (a name reserved since
 * then is caught by the relay, as before). An object that never heard a list cannot check, so it
 * accepts no publish (`unavailable`) until it does, unless its relay said in its `hello` that it
 * sends no list (a relay older than the `reserved` frame): then, having no list, it accepts any
 * name as the edge did before, with a warning, and the relay still refuses reserved ones.
 */
const KEY = 'reserved_sources';
/** Set while a relay without `reserved` frames was heard and no list ever was. */
const UNANNOUNCED = 'reserved_sources_unannounced';

export type ReservedState = 'heard' | 'unannounced' | 'unknown';

export function createReservedSources(meta: LinkStore['meta']) {
  let names: Set<string> | 'unannounced' | null | undefined; // undefined: not loaded yet; null: never heard
  const load = () => {
    if (names === undefined) {
      const stored = meta.get(KEY);
      if (stored !== undefined) names = new Set(JSON.parse(stored) as string[]);
      else names = meta.get(UNANNOUNCED) === undefined ? null : 'unannounced';
    }
    return names;
  };
  return {
    /** Whether publishes can be checked (or, with an older relay, need not wait): a list was heard, or none will come. */
    known: () => load() !== null,
    state: (): ReservedState => {
      const reserved = load();
      return reserved === null ? 'unknown' : reserved === 'unannounced' ? 'unannounced' : 'heard';
    },
    /** Throws `forbidden` for a reserved name, `unavailable` while no list was ever heard. */
    assertFree(source: string): void {
      const reserved = load();
      if (reserved === 'unannounced') return;
      if (reserved === null) {
        throw new UnavailableError('the edge has not yet heard from a relay which source names are reserved; retry');
      }
      if (reserved.has(source)) throw new ForbiddenError(`source ${source} is reserved: a source the mesh pulls`);
    },
    /**
     * A relay said hello: `announces` when it sends `reserved` frames (one follows at once). One
     * that does not leaves a list heard before in use; with none, publishes are no longer held.
     * Returns true when this object accepts every name (no list, and none will come).
     */
    hello(announces: boolean): boolean {
      const reserved = load();
      if (announces) {
        if (reserved === 'unannounced') {
          meta.delete(UNANNOUNCED);
          names = null; // the list follows; publishes wait for it
        }
        return false;
      }
      if (reserved instanceof Set) return false;
      meta.set(UNANNOUNCED, '1');
      names = 'unannounced';
      return true;
    },
    /** The relay's list, replacing the last one. */
    replace(sources: readonly string[]): void {
      meta.set(KEY, JSON.stringify(sources));
      meta.delete(UNANNOUNCED);
      names = new Set(sources);
    },
  };
}

export type ReservedSources = ReturnType<typeof createReservedSources>;
