import assert from 'node:assert/strict';
import { test } from 'node:test';
import fileTimesReporter, { fileTimes, summary } from '../tools/file-times-reporter.ts';

const pass = (file: string, nesting: number, ms: number) => ({
  type: 'test:pass',
  data: { file, nesting, details: { duration_ms: ms } },
});

test('adds up the top-level tests of each file, nested ones not twice, failures too', () => {
  const seconds = fileTimes([
    pass('/r/a.test.ts', 0, 1_500),
    pass('/r/a.test.ts', 1, 1_400), // inside the first: already in its 1.5 s
    { type: 'test:fail', data: { file: '/r/a.test.ts', nesting: 0, details: { duration_ms: 500 } } },
    pass('/r/b.test.ts', 0, 30_000),
    { type: 'test:diagnostic', data: { file: '/r/b.test.ts', nesting: 0 } },
  ]);
  assert.deepEqual(
    [...seconds],
    [
      ['/r/a.test.ts', 2],
      ['/r/b.test.ts', 30],
    ],
  );
});

test('names the slowest files first, relative to the run, and the total', () => {
  const text = summary(
    new Map([
      ['/r/a.test.ts', 2],
      ['/r/c/b.test.ts', 30],
      ['/r/d.test.ts', 1],
    ]),
    '/r',
    2,
  );
  const lines = text.trim().split('\n');
  assert.match(lines[0] as string, /3 files, 33 s in all/);
  assert.deepEqual(lines.slice(1), ['    30 s  c/b.test.ts', '     2 s  a.test.ts']);
});

test('as a reporter: one summary when the run ends', async () => {
  async function* events() {
    yield pass(`${process.cwd()}/x.test.ts`, 0, 4_000);
    yield pass(`${process.cwd()}/x.test.ts`, 2, 100);
  }
  const out: string[] = [];
  for await (const chunk of fileTimesReporter(events())) out.push(chunk);
  assert.equal(out.length, 1);
  assert.match(out[0] as string, /\n {5}4 s {2}x\.test\.ts\n$/);
});
