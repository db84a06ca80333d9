/**
 * The API of middleware steps: small modules in the plugins folder, each exporting (as
 * `default`) one step made with `defineStep`. Types only plus an identity function, so a
 * plugin written in TypeScript runs as is (Node strips the types).
 *
 * - `filter`: return false to drop the message (true keeps it).
 * - `map`: return the message to publish instead (its `id` stays the dedup key).
 * - `enrich`: return an object whose fields are merged into `data` (when `data` is an object).
 *
 * A step that throws, returns the wrong shape, or runs past its `timeout_ms` sends the message
 * to the dead-letter topic with the reason; the source keeps going.
 */
export interface SourceMessage {
  id: string;
  topic: string;
  source: string;
  ts: number;
  data: unknown;
}

export interface StepContext {
  /** The source the message came from. */
  source: string;
  /** Aborted when the step's time is up: pass it to fetch and the like. */
  signal: AbortSignal;
  log: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

type Awaitable<T> = T | Promise<T>;

export type Step =
  | { name: string; kind: 'filter'; timeout_ms?: number; run(m: SourceMessage, ctx: StepContext): Awaitable<boolean> }
  | {
      name: string;
      kind: 'map';
      timeout_ms?: number;
      run(m: SourceMessage, ctx: StepContext): Awaitable<SourceMessage>;
    }
  | {
      name: string;
      kind: 'enrich';
      timeout_ms?: number;
      run(m: SourceMessage, ctx: StepContext): Awaitable<Record<string, unknown>>;
    };

export function defineStep<T extends Step>(step: T): T {
  return step;
}
