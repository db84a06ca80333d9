import { defineStep } from '../../src/sources/plugin-api.ts';

/** Filter: keeps items whose `price` is a positive number. */
export default defineStep({
  name: 'only-positive',
  kind: 'filter',
  run: (message) => {
    const price = (message.data as { price?: unknown } | null)?.price;
    return typeof price === 'number' && price > 0;
  },
});
