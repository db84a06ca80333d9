/** Messages per second as an exponentially weighted moving average (time constant 10 s). */
export function createRate(now: () => number = Date.now, tauMs = 10_000) {
  let value = 0;
  let at = now();
  const decay = () => {
    const t = now();
    value *= Math.exp(-(t - at) / tauMs);
    at = t;
  };
  return {
    add(count: number) {
      decay();
      value += (count * 1000) / tauMs;
    },
    perSecond() {
      decay();
      return value;
    },
  };
}
