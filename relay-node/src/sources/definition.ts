import { isSourceName, isTopic } from '@anode/shared';
import { z } from 'zod';
import { nonNegativeInt, positiveInt } from '../config-fields.ts';
import type { SourceKind } from './source-kind.ts';

/** Fields every source has, whatever its kind. */
export const commonShape = {
  // The source grammar of envelopes (PROTOCOL.md), without `@ : |`, which sources never needed.
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,128}$/, 'use 1-128 of A-Z a-z 0-9 _ . -')
    .refine(
      isSourceName,
      'dot-separated non-empty segments, not an Object.prototype name (__proto__, constructor, ...)',
    ),
  kind: z.string().min(1),
  topic: z.string().refine(isTopic, 'not a valid topic'),
  /** JSONPath of the items in a payload; without it the whole payload is one item. */
  items_path: z.string().min(1).optional(),
  /** JSONPath (relative to an item) of its id; without it the id is a hash of the item. */
  id_path: z.string().min(1).optional(),
  /** JSONPath of the item's source timestamp (ms number, seconds number < 1e11, or date string). */
  ts_path: z.string().min(1).optional(),
  /** JSONPath of the item's topic; falls back to `topic`. */
  topic_path: z.string().min(1).optional(),
  pipeline: z.array(z.string().min(1)).default([]),
  paused: z.boolean().default(false),
  timeout_ms: positiveInt.default(10_000),
  backoff_min_ms: positiveInt.default(500),
  backoff_max_ms: positiveInt.default(60_000),
  /** Ids remembered per source to skip re-ingesting (the store's content ids catch the rest). */
  dedup_window: nonNegativeInt.default(4096),
};

export type CommonDefinition = z.infer<z.ZodObject<typeof commonShape>>;
export type SourceDefinition = CommonDefinition & Record<string, unknown>;

export class SourceDefinitionError extends Error {
  override name = 'SourceDefinitionError';
}

/**
 * One schema per kind, built once: zod compiles a schema on its first parse, so building it per
 * definition cost about 0.15 ms each, three seconds of startup for 10,000 sources (each parsed
 * twice: as config, then when installed).
 */
const schemas = new WeakMap<SourceKind, z.ZodType>();
function schemaOf(kind: SourceKind): z.ZodType {
  let schema = schemas.get(kind);
  if (!schema) schemas.set(kind, (schema = z.strictObject({ ...commonShape, ...kind.shape })));
  return schema;
}

/** Validates a raw definition against the common fields and its kind's own fields. */
export function parseDefinition(raw: unknown, kinds: ReadonlyMap<string, SourceKind>): SourceDefinition {
  const kindName = (raw as { kind?: unknown } | null)?.kind;
  const kind = typeof kindName === 'string' ? kinds.get(kindName) : undefined;
  if (!kind) {
    throw new SourceDefinitionError(`kind: must be one of ${[...kinds.keys()].join(', ')} (got ${String(kindName)})`);
  }
  const result = schemaOf(kind).safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = (raw as { name?: unknown }).name;
    throw new SourceDefinitionError(
      `source ${typeof name === 'string' ? name : '?'}: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`,
    );
  }
  return result.data as SourceDefinition;
}
