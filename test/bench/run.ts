// `npm run bench [-- <scenario>…] [--quick] [--runs N] [--cpu-prof] [size flags]`: runs the
// scenarios (all, or those named) beside their baselines, prints one Markdown table each and
// writes JSON to bench-results/<scenario>.json and the whole report to bench-results/latest.md.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import type { Flags, ScenarioResult } from './scenario.ts';
import { SCENARIOS } from './scenarios.ts';

const common = {
  quick: { type: 'boolean', default: false },
  runs: { type: 'string' },
  only: { type: 'string' }, // older spelling of a positional scenario name
  'cpu-prof': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;
const options: NonNullable<ParseArgsConfig['options']> = Object.assign({}, ...SCENARIOS.map((s) => s.flags), common);
const { values, positionals } = parseArgs({ options, allowPositionals: true }) as {
  values: Flags;
  positionals: string[];
};

if (values.help) {
  const lines = [
    'usage: npm run bench -- [scenario…] [--quick] [--runs N] [--cpu-prof] [size flags]',
    '',
    'scenarios (default: all, in this order):',
    ...SCENARIOS.map(
      (s) =>
        `  ${s.name.padEnd(12)} ${s.summary}${
          Object.keys(s.flags).length
            ? `\n  ${''.padEnd(12)} flags: ${Object.keys(s.flags)
                .map((f) => `--${f}`)
                .join(' ')}`
            : ''
        }`,
    ),
    '',
    'Lists are comma-separated (--subscribers 100,1000). --cpu-prof writes aNode server profiles',
    'to bench-results/profiles/.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  process.exit(0);
}

const wanted = [...positionals, ...(typeof values.only === 'string' ? values.only.split(',') : [])];
const unknown = wanted.filter((name) => !SCENARIOS.some((s) => s.name === name));
if (unknown.length > 0) {
  process.stderr.write(
    `bench: unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.name).join(', ')})\n`,
  );
  process.exit(2);
}
const chosen = wanted.length > 0 ? SCENARIOS.filter((s) => wanted.includes(s.name)) : SCENARIOS;
const quick = values.quick === true;
const runs = Number(values.runs ?? (quick ? 1 : 3));
const machine = `${cpus().length} cores (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const date = new Date().toISOString();
const log = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const cpuProfDir = values['cpu-prof'] ? resolve('bench-results/profiles') : undefined;

await mkdir(cpuProfDir ?? 'bench-results', { recursive: true });
const out = [`# aNode benchmarks (${date.slice(0, 10)}, ${machine}${quick ? ', --quick' : ''}, median of ${runs})`];
let failed = 0;
for (const scenario of chosen) {
  const started = performance.now();
  log(`${scenario.name}: starting`);
  let result: ScenarioResult;
  try {
    result = await scenario.run({ quick, runs, flags: values, cpuProfDir, log });
  } catch (error) {
    failed += 1;
    log(`${scenario.name}: FAILED: ${(error as Error).stack ?? error}`);
    out.push('', `## ${scenario.name}`, '', `FAILED: ${(error as Error).message}`);
    continue;
  }
  const seconds = Math.round((performance.now() - started) / 1000);
  log(`${scenario.name}: done in ${seconds} s`);
  out.push('', `## ${scenario.name}`, '', ...result.rows, ...(result.notes?.length ? ['', ...result.notes] : []));
  await writeFile(
    `bench-results/${scenario.name}.json`,
    `${JSON.stringify({ machine, date, quick, runs, seconds, data: result.data }, null, 2)}\n`,
  );
}
const report = `${out.join('\n')}\n`;
await writeFile('bench-results/latest.md', report);
process.stdout.write(report);
process.exitCode = failed > 0 ? 1 : 0;
