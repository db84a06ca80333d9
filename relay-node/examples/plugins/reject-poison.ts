import { defineStep } from '../../src/sources/plugin-api.ts';

/** Filter that throws on `{"poison": true}`: shows the dead-letter path (the source keeps going). */
export default defineStep({
  name: 'reject-poison',
  kind: 'filter',
  run: (message) => {
    if ((message.data as { poison?: unknown } | null)?.poison === true) throw new Error('poisoned item');
    return true;
  },
});
