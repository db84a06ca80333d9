// A second reporter for `npm test`: when the run ends, the test files that took longest (the time
// in their top-level tests and suites, as the spec reporter shows them), so a CI log says where its
// minutes go. CI runs the whole suite in one process per file, one file at a time on two cores, and
// keeps it under 60 minutes (.ci/run): a file that grows slow shows up here first.
import { relative } from 'node:path';

interface TestEvent {
  type: string;
  data?: { file?: string; nesting?: number; details?: { duration_ms?: number } };
}

/** How many files the summary names. */
export const SLOWEST = 20;

/** Seconds in each file's top-level tests, from the runner's `test:pass` and `test:fail` events. */
export function fileTimes(events: Iterable<TestEvent>): Map<string, number> {
  const seconds = new Map<string, number>();
  for (const event of events) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { file, nesting, details } = event.data ?? {};
    if (file === undefined || nesting !== 0) continue;
    seconds.set(file, (seconds.get(file) ?? 0) + (details?.duration_ms ?? 0) / 1000);
  }
  return seconds;
}

/** The summary's lines: the slowest files first, then the total. */
export function summary(seconds: Map<string, number>, cwd = process.cwd(), count = SLOWEST): string {
  const rows = [...seconds].sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((sum, [, s]) => sum + s, 0);
  const lines = rows.slice(0, count).map(([file, s]) => `${s.toFixed(0).padStart(6)} s  ${relative(cwd, file)}`);
  return (
    `\n== slowest test files (seconds in their top-level tests; ${rows.length} files, ${total.toFixed(0)} s in all)\n` +
    `${lines.join('\n')}\n`
  );
}

export default async function* fileTimesReporter(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const events: TestEvent[] = [];
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data?.nesting === 0) events.push(event);
  }
  yield summary(fileTimes(events));
}
