/**
 * A tiny typed event emitter that runs everywhere (no Node `events`). A listener that throws is
 * reported as an uncaught error, as `EventTarget` does, and the others still run: thrown through
 * the client, it unwound the client mid-update (a throwing `close` listener stopped every
 * reconnect, a throwing `open` one every resubscription).
 */
export class Emitter<Events extends Record<string, unknown>> {
  readonly #listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  on<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as (payload: never) => void);
    return () => set.delete(listener as (payload: never) => void);
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const listener of this.#listeners.get(event) ?? []) {
      callSafely(listener as (payload: Events[K]) => void, payload);
    }
  }
}

/** Calls a caller's function; what it throws becomes an uncaught error of its own turn. */
export function callSafely<T>(fn: (payload: T) => void, payload: T): void {
  try {
    fn(payload);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}
