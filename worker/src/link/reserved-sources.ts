import { ForbiddenError, UnavailableError } from '@anode/shared';
import type { LinkStore } from './link-store.ts';

/**
 * The source names the mesh reserves (the sources its relays pull: PROTOCOL.md, Auth), as the
 * relay last told this object over its link (`reserved` frame). A relay refuses a message under
 * one of them, and what the edge had acked would then be lost, so a linked object checks every
 * publish against them before it acks. Kept in storage: a hibernated object, or one whose link
 * is down or idle-closed, still checks against the last list it heard (a name reserved since
 * then is caught by the relay, as before). An object that never heard a list cannot check, so it
 * accepts no publish (`unavailable`) until it does.
 */
const KEY = 'reserved_sources';

export function createReservedSources(meta: LinkStore['meta']) {
  let names: Set<string> | null | undefined; // undefined: not loaded yet; null: never heard
  const load = () => {
    if (names === undefined) {
      const stored = meta.get(KEY);
      names = stored === undefined ? null : new Set(JSON.parse(stored) as string[]);
    }
    return names;
  };
  return {
    /** Whether a list was ever heard. */
    known: () => load() !== null,
    /** Throws `forbidden` for a reserved name, `unavailable` while no list was ever heard. */
    assertFree(source: string): void {
      const reserved = load();
      if (reserved === null) {
        throw new UnavailableError('the edge has not yet heard from a relay which source names are reserved; retry');
      }
      if (reserved.has(source)) throw new ForbiddenError(`source ${source} is reserved: a source the mesh pulls`);
    },
    /** The relay's list, replacing the last one. */
    replace(sources: readonly string[]): void {
      meta.set(KEY, JSON.stringify(sources));
      names = new Set(sources);
    },
  };
}

export type ReservedSources = ReturnType<typeof createReservedSources>;
