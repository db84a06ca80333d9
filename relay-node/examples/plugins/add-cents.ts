import { defineStep } from '../../src/sources/plugin-api.ts';

/** Enrich: adds `cents`, the price in integer cents. */
export default defineStep({
  name: 'add-cents',
  kind: 'enrich',
  run: (message) => ({ cents: Math.round(Number((message.data as { price?: number }).price) * 100) }),
});
