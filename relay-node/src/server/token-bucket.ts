/** A token bucket: `rate` tokens per second, holding at most `burst`. */
export function createTokenBucket(rate: number, burst: number, now: () => number = performance.now.bind(performance)) {
  let tokens = burst;
  let last = now();
  return {
    take(count = 1): boolean {
      const t = now();
      tokens = Math.min(burst, tokens + ((t - last) / 1000) * rate);
      last = t;
      if (tokens < count) return false;
      tokens -= count;
      return true;
    },
  };
}
