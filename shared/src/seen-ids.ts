/**
 * The last `capacity` keys recorded, each with a value (insertion-ordered eviction: setting a key
 * again updates its value but does not make it young again).
 *
 * The oldest key is found through a ring of the keys in the order they were added, not by asking
 * the Map for its first key: V8 leaves a deleted entry's slot in a Map's or Set's table until the
 * table is rebuilt, and `keys().next()` steps over every such slot from the front, so evicting the
 * oldest of 100,000 keys that way cost ~28 µs per add on this project's machine (30% of a busy
 * relay's event loop), against well under 1 µs here.
 */
export class RecentMap<V> {
  /** key → the number of the add that recorded it (a key deleted and added again has a new one). */
  readonly #adds = new Map<string, number>();
  /**
   * Add n's key and value sit at n % capacity until a later add takes the slot. The arrays grow
   * with the adds up to capacity: a large map that holds little allocates little.
   */
  readonly #keys: (string | undefined)[] = [];
  readonly #values: (V | undefined)[] = [];
  readonly #capacity: number;
  #added = 0;

  constructor(capacity: number) {
    this.#capacity = Math.max(1, Math.floor(capacity));
  }

  get(key: string): V | undefined {
    const n = this.#adds.get(key);
    return n === undefined ? undefined : this.#values[n % this.#capacity];
  }

  has(key: string): boolean {
    return this.#adds.has(key);
  }

  /** Records `key` (a new one may push the oldest out); false when it was there already. */
  set(key: string, value: V): boolean {
    const capacity = this.#capacity;
    const known = this.#adds.get(key);
    if (known !== undefined) {
      this.#values[known % capacity] = value;
      return false;
    }
    const slot = this.#added % capacity;
    const oldest = this.#keys[slot];
    // Evicted only if that add is still the one that stands for it.
    if (oldest !== undefined && this.#adds.get(oldest) === this.#added - capacity) this.#adds.delete(oldest);
    this.#keys[slot] = key;
    this.#values[slot] = value;
    this.#adds.set(key, this.#added);
    this.#added += 1;
    return true;
  }

  delete(key: string): void {
    this.#adds.delete(key);
  }

  get size(): number {
    return this.#adds.size;
  }

  /** The keys held, oldest first. */
  *keys(): IterableIterator<string> {
    const capacity = this.#capacity;
    for (let n = Math.max(0, this.#added - capacity); n < this.#added; n++) {
      const key = this.#keys[n % capacity] as string;
      if (this.#adds.get(key) === n) yield key;
    }
  }
}

/** The last `capacity` ids seen, for dropping duplicate deliveries (insertion-ordered eviction). */
export class SeenIds {
  readonly #recent: RecentMap<true>;

  constructor(capacity: number) {
    this.#recent = new RecentMap(capacity);
  }

  /** Records `id`; false when it was seen already. */
  add(id: string): boolean {
    return this.#recent.set(id, true);
  }

  has(id: string): boolean {
    return this.#recent.has(id);
  }

  /** Forgets `id` (a delivery that must be allowed again). */
  delete(id: string): void {
    this.#recent.delete(id);
  }

  get size(): number {
    return this.#recent.size;
  }

  /** The ids held, oldest first. */
  ids(): IterableIterator<string> {
    return this.#recent.keys();
  }
}
