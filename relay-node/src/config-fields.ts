import { MAX_TIMER_MS } from '@anode/shared';
import { z } from 'zod';

/**
 * Building blocks for config keys. Every key is a zod schema with a default (or optional) and a
 * `.describe()` text, which `anode --help` prints. Values from the environment and flags arrive
 * as strings, so numbers and booleans are coerced, and lists are comma-separated (a repeated
 * flag adds to the list).
 */
/**
 * A number from a config file, the environment or a flag: text is read as a number, but blank
 * text, null and booleans are refused (coerced, they were 0 or 1: `"retention_max_age_ms": null`
 * meant "keep for ever", and `ANODE_PORT=" "` a random port).
 */
const numberIn = (schema: z.ZodNumber) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), schema);
/** An integer from `min` to `max` (inclusive), read as numberIn does. */
export const intIn = (min: number, max = Number.MAX_SAFE_INTEGER, why?: string) =>
  numberIn(z.number().int().min(min).max(max, why));
export const port = intIn(0, 65535);
export const positiveInt = intIn(1);
export const nonNegativeInt = intIn(0);
export { MAX_TIMER_MS };
const TIMER_LIMIT = `at most ${MAX_TIMER_MS} (2^31-1 ms, about 24.8 days: Node's longest timer)`;
/** A duration that is set as a timer: positive, and at most MAX_TIMER_MS (about 24.8 days). */
export const timerMs = intIn(1, MAX_TIMER_MS, TIMER_LIMIT);
/** A timer's duration where 0 means none. */
export const timerOrZeroMs = intIn(0, MAX_TIMER_MS, TIMER_LIMIT);
/** The HS256 secret: the relay refuses a shorter one, and `anode token` signs with none shorter. */
export const jwtSecret = z.string().min(32, 'must be at least 32 characters');
export const bool = z.union(
  [z.boolean(), z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')],
  { error: 'expected true, false, 1 or 0' },
);
export const list = <T extends z.ZodType>(item: T) =>
  z.preprocess(
    (v) =>
      typeof v === 'string'
        ? v
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : v,
    z.array(item),
  );
