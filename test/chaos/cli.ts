// `npm run chaos -- [--minutes N] [--seed S] [--store embedded|cassandra]`: five relays in a
// private mesh, the edge Worker, publishers and subscribers, and a seeded fault schedule; then
// checks that nothing acked was lost. See docs/chaos.md. Needs root (network namespaces).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { FaultKind } from './faults.ts';
import { buildLab, destroyLab, type LabPlan, labUnavailable, planLab } from './lab.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    seed: { type: 'string' },
    store: { type: 'string', default: 'embedded' },
    'settle-s': { type: 'string', default: '900' },
    'max-rss-mib': { type: 'string', default: '1536' },
    'max-fds': { type: 'string', default: '2048' },
    keep: { type: 'boolean', default: false },
    faults: { type: 'string' },
  },
});
const store = values.store === 'cassandra' ? 'cassandra' : values.store === 'embedded' ? 'embedded' : undefined;
const minutes = Number(values.minutes);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!store || !(minutes > 0) || !Number.isInteger(seed)) {
  process.stderr.write('usage: npm run chaos -- [--minutes N] [--seed S] [--store embedded|cassandra]\n');
  process.exit(2);
}

const DRIVER_ENV = 'ANODE_CHAOS_DRIVER';
const driver = process.env[DRIVER_ENV];

if (driver) {
  // Inside the lab's client namespace: run the whole thing.
  const { runChaos } = await import('./run.ts');
  const { plan, runDir } = JSON.parse(driver) as { plan: LabPlan; runDir: string };
  const code = await runChaos({
    minutes,
    seed,
    store,
    runDir,
    plan,
    maxRssBytes: Number(values['max-rss-mib']) * 1048576,
    maxFds: Number(values['max-fds']),
    settleMs: Number(values['settle-s']) * 1000,
    ...(values.faults === undefined
      ? {}
      : { faults: values.faults.split(',').filter((k) => k && k !== 'none') as FaultKind[] }),
  });
  process.exit(code);
} else {
  const unavailable = labUnavailable();
  if (unavailable) {
    process.stderr.write(`chaos: cannot run: ${unavailable}\n`);
    process.exit(3);
  }
  const plan = planLab(5);
  const runDir = mkdtempSync(join(tmpdir(), `anode-chaos-${seed}-`));
  process.stdout.write(`chaos: seed ${seed}, store ${store}, ${minutes} min; run folder ${runDir}\n`);
  buildLab(plan);
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      plan.clients,
      process.execPath,
      fileURLToPath(import.meta.url),
      ...process.argv.slice(2),
      '--seed',
      String(seed),
    ],
    { stdio: 'inherit', env: { ...process.env, [DRIVER_ENV]: JSON.stringify({ plan, runDir }) } },
  );
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
  destroyLab(plan);
  if (code === 0 && !values.keep) rmSync(runDir, { recursive: true, force: true });
  process.exit(code);
}
