/** The last `capacity` ids seen, for dropping duplicate deliveries (insertion-ordered eviction). */
export class SeenIds {
  readonly #ids = new Set<string>();
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity);
  }

  /** Records `id`; false when it was seen already. */
  add(id: string): boolean {
    if (this.#ids.has(id)) return false;
    this.#ids.add(id);
    if (this.#ids.size > this.#capacity) {
      const oldest = this.#ids.values().next().value;
      if (oldest !== undefined) this.#ids.delete(oldest);
    }
    return true;
  }

  has(id: string): boolean {
    return this.#ids.has(id);
  }

  /** Forgets `id` (a delivery that must be allowed again). */
  delete(id: string): void {
    this.#ids.delete(id);
  }
}
