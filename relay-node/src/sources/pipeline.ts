import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from '../logger.ts';
import type { SourceMessage, Step } from './plugin-api.ts';

export type StepOutcome =
  | { outcome: 'ok'; message: SourceMessage }
  | { outcome: 'dropped' }
  | { outcome: 'dead'; step: string; reason: string };

/** A dead letter's reason for an exception, `Name: message`; never throws (`throw null` included). */
export const reasonOf = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : `Error: ${String(error)}`;

export class StepTimeoutError extends Error {
  override name = 'StepTimeoutError';
}

const isStep = (value: unknown): value is Step => {
  const s = value as Partial<Step> | null;
  return (
    typeof s?.name === 'string' &&
    typeof s.run === 'function' &&
    (s.kind === 'filter' || s.kind === 'map' || s.kind === 'enrich')
  );
};

/** Loads every `.ts`, `.js` and `.mjs` module of `dir`; each default-exports one step. */
export async function loadSteps(dir: string | undefined, log: Logger): Promise<Map<string, Step>> {
  const steps = new Map<string, Step>();
  if (!dir) return steps;
  const files = (await readdir(dir)).filter((f) => /\.(ts|js|mjs)$/.test(f) && !/\.(test|d)\.ts$/.test(f)).sort();
  for (const file of files) {
    const module = (await import(pathToFileURL(resolve(join(dir, file))).href)) as { default?: unknown };
    if (!isStep(module.default)) throw new Error(`plugin ${file}: the default export is not a step (defineStep)`);
    if (steps.has(module.default.name))
      throw new Error(`plugin ${file}: step "${module.default.name}" is defined twice`);
    steps.set(module.default.name, module.default);
    log.info({ step: module.default.name, kind: module.default.kind, file }, 'middleware step loaded');
  }
  return steps;
}

async function withTimeout<T>(ms: number, run: (signal: AbortSignal) => Promise<T> | T): Promise<T> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new StepTimeoutError(`timed out after ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([Promise.resolve().then(() => run(controller.signal)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const isMessage = (m: unknown): m is SourceMessage => {
  const v = m as Partial<SourceMessage> | null;
  return typeof v?.id === 'string' && typeof v.topic === 'string' && typeof v.ts === 'number' && 'data' in v;
};

/**
 * Runs a message through `steps` in order. A step that throws, times out or returns the wrong
 * shape ends the run as `dead` with the reason; nothing escapes. (A step that blocks the event
 * loop synchronously cannot be interrupted: keep steps asynchronous.)
 */
export async function runSteps(
  steps: readonly Step[],
  message: SourceMessage,
  options: { defaultTimeoutMs: number; log: Logger },
): Promise<StepOutcome> {
  let current = message;
  for (const step of steps) {
    try {
      const ctx = (signal: AbortSignal) => ({ source: current.source, signal, log: options.log });
      const result: unknown = await withTimeout(step.timeout_ms ?? options.defaultTimeoutMs, (signal) =>
        step.run(current, ctx(signal)),
      );
      if (step.kind === 'filter') {
        if (typeof result !== 'boolean') throw new TypeError(`filter returned ${typeof result}, not a boolean`);
        if (!result) return { outcome: 'dropped' };
      } else if (step.kind === 'map') {
        if (!isMessage(result)) throw new TypeError('map did not return a message {id, topic, ts, data}');
        current = { ...result, source: current.source };
      } else {
        if (result === null || typeof result !== 'object') throw new TypeError('enrich did not return an object');
        const data = current.data !== null && typeof current.data === 'object' ? current.data : { value: current.data };
        current = { ...current, data: { ...data, ...result } };
      }
    } catch (error) {
      return { outcome: 'dead', step: step.name, reason: reasonOf(error) };
    }
  }
  return { outcome: 'ok', message: current };
}
