import { defineStep } from '../../src/sources/plugin-api.ts';

/** Map: upper-cases `symbol` and files the message under `prices.<symbol>`. */
export default defineStep({
  name: 'upper-symbol',
  kind: 'map',
  timeout_ms: 200,
  run: (message) => {
    const data = message.data as { symbol: string };
    const symbol = data.symbol.toUpperCase();
    return { ...message, topic: `prices.${symbol.toLowerCase()}`, data: { ...data, symbol } };
  },
});
