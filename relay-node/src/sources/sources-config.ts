import { isPattern, isTopic } from '@anode/shared';
import { z } from 'zod';
import { positiveInt, timerMs } from '../config-fields.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';
import { parseDefinition } from './definition.ts';

/** A JSON array from the config file, or a JSON string from the environment or a flag. */
const jsonArray = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v; // refused below as "expected array"
    }
  }, z.array(item));

const sourceEntry = z.unknown().superRefine((raw, ctx) => {
  try {
    parseDefinition(raw, BUILTIN_KINDS);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
  }
});

const topicPipeline = z.object({
  topic: z.string().refine((t) => isTopic(t) || isPattern(t), 'not a topic or pattern'),
  steps: z.array(z.string().min(1)).min(1),
});

/** Config keys of pulled sources (issue 6). */
export const sourcesConfigShape = {
  admin_token: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe('bearer token of the admin API (/v1/admin/…); unset: the admin API refuses everything'),
  sources: jsonArray(sourceEntry).default([]).describe('sources to pull (JSON array; see docs/sources.md)'),
  source_pipelines: jsonArray(topicPipeline)
    .default([])
    .describe('per-topic middleware, run after a source\'s own steps: [{"topic":"pattern","steps":["name"]}]'),
  plugins_dir: z.string().min(1).optional().describe('folder of middleware step modules (.ts/.js)'),
  source_concurrency: positiveInt.default(256).describe('source polls and connects in flight at once'),
  source_step_timeout_ms: timerMs.default(1_000).describe('default time limit of one middleware step'),
  dead_letter_topic: z
    .string()
    .refine(isTopic, 'not a valid topic')
    .default('sources.dead-letter')
    .describe('topic of messages a middleware step refused by throwing or timing out'),
};
