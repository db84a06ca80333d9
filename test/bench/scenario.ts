// The shape every benchmark scenario has: its own size flags, and a run that measures aNode and
// its baseline in the same run and returns Markdown rows plus the raw figures (saved as JSON).
import type { ParseArgsConfig } from 'node:util';

export type Flags = Record<string, string | boolean | undefined>;

export interface ScenarioContext {
  /** Small sizes: every scenario together stays under three minutes. */
  quick: boolean;
  /** Runs per measurement; tables show the median. */
  runs: number;
  /** Parsed command-line flags (the scenario's own sizes among them). */
  flags: Flags;
  /** Directory for `.cpuprofile` files when `--cpu-prof` is given (aNode's server processes only). */
  cpuProfDir?: string;
  /** Progress output (stderr): long work says what it is doing. */
  log(line: string): void;
}

export interface ScenarioResult {
  /** A Markdown table (header, separator, rows). */
  rows: string[];
  /** Lines printed under the table: load-generator saturation, skipped parts and why. */
  notes?: string[];
  /** Raw figures, written to bench-results/<name>.json. */
  data: unknown;
}

export interface Scenario {
  name: string;
  /** One line for `--help`. */
  summary: string;
  /** The scenario's size flags (merged with every other scenario's; same name, same meaning). */
  flags: NonNullable<ParseArgsConfig['options']>;
  run(context: ScenarioContext): Promise<ScenarioResult>;
}

/** A comma-separated list of numbers from a flag, or the default. */
export function numberList(value: string | boolean | undefined, fallback: number[]): number[] {
  if (typeof value !== 'string' || value === '') return fallback;
  const list = value.split(',').map((part) => Number(part.replace(/_/g, '')));
  if (list.some((n) => !Number.isFinite(n) || n <= 0)) throw new Error(`not a list of positive numbers: ${value}`);
  return list;
}

/** A single number from a flag, or the default. */
export function numberFlag(value: string | boolean | undefined, fallback: number): number {
  if (typeof value !== 'string' || value === '') return fallback;
  const n = Number(value.replace(/_/g, ''));
  if (!Number.isFinite(n) || n <= 0) throw new Error(`not a positive number: ${value}`);
  return n;
}

/** Median of each numeric field over several runs (other fields from the first). */
export function medianOf<T extends object>(results: T[]): T {
  const first = results[0] as Record<string, unknown>;
  const out: Record<string, unknown> = { ...first };
  for (const [key, value] of Object.entries(first)) {
    if (typeof value !== 'number') continue;
    const sorted = results.map((r) => (r as Record<string, number>)[key] as number).sort((a, b) => a - b);
    out[key] = sorted[Math.floor((sorted.length - 1) / 2)];
  }
  return out as T;
}

export const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '–');
