import { assertDataDepth, isSourceName, isTopic, MAX_DATA_DEPTH } from '@anode/shared';
import { z } from 'zod';
import { nonNegativeInt, timerMs } from '../config-fields.ts';
import { jsonPathProblem } from './json-path.ts';
import type { SourceKind } from './source-kind.ts';

/** A JSONPath, compiled when the definition is parsed (see jsonPathProblem). */
const jsonPath = z
  .string()
  .min(1)
  .superRefine((path, ctx) => {
    const problem = jsonPathProblem(path);
    if (problem) ctx.addIssue({ code: 'custom', message: `not a valid JSONPath: ${problem}` });
  });

/**
 * Request headers, checked as fetch checks them (`new Headers`), so a bad one is refused here
 * rather than failing every attempt. The message names the header, never its value (a secret).
 */
export const requestHeaders = z
  .record(z.string(), z.string())
  .default({})
  .superRefine((headers, ctx) => {
    for (const [name, value] of Object.entries(headers)) {
      const fault = headerFault(name, value);
      if (fault) ctx.addIssue({ code: 'custom', path: [name], message: fault });
    }
  });

function headerFault(name: string, value: string): string | undefined {
  try {
    new Headers([[name, 'x']]);
  } catch {
    return `${JSON.stringify(name)} is not a valid header name`;
  }
  try {
    new Headers([[name, value]]);
  } catch {
    return 'not a valid header value (no line breaks, control or non-Latin-1 characters)';
  }
  return undefined;
}

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
  items_path: jsonPath.optional(),
  /** JSONPath (relative to an item) of its id; without it, or where it finds none or `""`, the id is a hash of the item. */
  id_path: jsonPath.optional(),
  /** JSONPath of the item's source timestamp (an epoch number in s, ms, µs or ns, or a date string: toTimestamp). */
  ts_path: jsonPath.optional(),
  /** JSONPath of the item's topic; falls back to `topic`. */
  topic_path: jsonPath.optional(),
  pipeline: z.array(z.string().min(1)).default([]),
  paused: z.boolean().default(false),
  timeout_ms: timerMs.default(10_000),
  backoff_min_ms: timerMs.default(500),
  backoff_max_ms: timerMs.default(60_000),
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

/** The deepest source definition loaded (from sources.json or a config file); see parseDefinition. */
export const MAX_DEFINITION_DEPTH = 2 * MAX_DATA_DEPTH;

/**
 * Validates a raw definition against the common fields and its kind's own fields. `exact`: the
 * fields, new from the admin API, that must already be of their type: the number schemas read
 * text as a number (for config from the environment and flags), so `"interval_ms":"1000"` was
 * accepted and the string stored and echoed back as given. Not applied to definitions loaded
 * (sources.json, a config file, another member): one held from before still loads.
 */
export function parseDefinition(
  raw: unknown,
  kinds: ReadonlyMap<string, SourceKind>,
  exact: Iterable<string> = [],
): SourceDefinition {
  const kindName = (raw as { kind?: unknown } | null)?.kind;
  const kind = typeof kindName === 'string' ? kinds.get(kindName) : undefined;
  if (!kind) {
    throw new SourceDefinitionError(`kind: must be one of ${[...kinds.keys()].join(', ')} (got ${String(kindName)})`);
  }
  const name = (raw as { name?: unknown }).name;
  const refuse = (field: string, message: string | undefined) =>
    new SourceDefinitionError(`source ${typeof name === 'string' ? name : '?'}: ${field || '(root)'}: ${message}`);
  // Serialized again and again (sources.json, the mesh's shared state and its digest every beat,
  // an http body per poll): one past what JSON.stringify recurses through (~4,400 levels) stopped
  // the relay after it started. New ones are held to MAX_DATA_DEPTH (admin-routes.ts); one held
  // from before up to twice that still loads, and replicates (members.ts takes snapshots so deep).
  try {
    assertDataDepth(raw, MAX_DEFINITION_DEPTH);
  } catch (error) {
    throw refuse('', (error as Error).message.replace(/^data: /, ''));
  }
  const result = schemaOf(kind).safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw refuse(issue?.path.join('.') ?? '', issue?.message);
  }
  const definition = result.data as SourceDefinition;
  for (const field of exact) {
    const given = (raw as Record<string, unknown>)[field];
    if (typeof given === 'string' && typeof definition[field] === 'number') {
      throw refuse(field, `must be a number, not the string ${JSON.stringify(given)}`);
    }
  }
  const fault = kind.check?.(definition);
  if (fault) throw refuse(fault.field, fault.message);
  return definition;
}
