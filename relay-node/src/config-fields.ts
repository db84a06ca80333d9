import { z } from 'zod';

/**
 * Building blocks for config keys. Every key is a zod schema with a default (or optional) and a
 * `.describe()` text, which `anode --help` prints. Values from the environment and flags arrive
 * as strings, so numbers and booleans are coerced, and lists are comma-separated (a repeated
 * flag adds to the list).
 */
export const port = z.coerce.number().int().min(0).max(65535);
export const positiveInt = z.coerce.number().int().positive();
export const nonNegativeInt = z.coerce.number().int().nonnegative();
/** Longest delay Node's timers take: a longer one fires after 1 ms instead (with a warning). */
export const MAX_TIMER_MS = 2_147_483_647;
/** A duration that is set as a timer: positive, and at most MAX_TIMER_MS (about 24.8 days). */
export const timerMs = positiveInt.max(
  MAX_TIMER_MS,
  `at most ${MAX_TIMER_MS} (2^31-1 ms, about 24.8 days: Node's longest timer)`,
);
/** The HS256 secret: the relay refuses a shorter one, and `anode token` signs with none shorter. */
export const jwtSecret = z.string().min(32, 'must be at least 32 characters');
export const bool = z.union([
  z.boolean(),
  z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1'),
]);
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
