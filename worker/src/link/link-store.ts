/**
 * What the relay link needs of its Durable Object's storage (hub/hub-store.ts provides it): the
 * link's own keys in `meta`, the outbox of publishes no relay has stored yet, and the ring's floor.
 * Declared here so that link/ does not import hub/.
 */
export interface LinkStore {
  meta: {
    get(key: string): string | undefined;
    set(key: string, value: string): void;
    delete(key: string): void;
  };
  raiseFloor(cursor: string): void;
  /** The ring's floor: no message at or below it is kept in the ring. */
  floor(): string;
  outbox: {
    size(): number;
    /**
     * Waiting messages with seq above `fromSeq`, oldest first, read lazily (stop when a frame is
     * full); `body` is the envelope's JSON.
     */
    after(fromSeq: number): Iterable<{ seq: number; body: string }>;
    remove(ids: readonly string[]): void;
  };
}
