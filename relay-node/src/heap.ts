/** A binary min-heap ordered by `before`. */
export function createHeap<T>(before: (a: T, b: T) => boolean) {
  const items: T[] = [];
  const swap = (i: number, j: number) => ([items[i], items[j]] = [items[j] as T, items[i] as T]);
  return {
    get size() {
      return items.length;
    },
    peek: (): T | undefined => items[0],
    push(item: T) {
      items.push(item);
      for (let i = items.length - 1; i > 0;) {
        const parent = (i - 1) >> 1;
        if (!before(items[i] as T, items[parent] as T)) break;
        swap(i, parent);
        i = parent;
      }
    },
    pop(): T | undefined {
      const top = items[0];
      const last = items.pop();
      if (items.length > 0 && last !== undefined) {
        items[0] = last;
        for (let i = 0; ;) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          if (l < items.length && before(items[l] as T, items[m] as T)) m = l;
          if (r < items.length && before(items[r] as T, items[m] as T)) m = r;
          if (m === i) break;
          swap(i, m);
          i = m;
        }
      }
      return top;
    },
    clear() {
      items.length = 0;
    },
  };
}
