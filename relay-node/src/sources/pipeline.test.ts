import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadSteps, runSteps } from './pipeline.ts';
import { defineStep, type SourceMessage } from './plugin-api.ts';

const log = pino({ level: 'silent' });
const message: SourceMessage = { id: '1', topic: 't.a', source: 's', ts: 1, data: { price: 2 } };
const run = (steps: Parameters<typeof runSteps>[0]) => runSteps(steps, message, { defaultTimeoutMs: 50, log });

describe('middleware steps', () => {
  it('filters, maps and enriches in order', async () => {
    const result = await run([
      defineStep({ name: 'keep', kind: 'filter', run: () => true }),
      defineStep({ name: 'retopic', kind: 'map', run: (m) => ({ ...m, topic: 't.b' }) }),
      defineStep({ name: 'more', kind: 'enrich', run: async () => ({ extra: 1 }) }),
    ]);
    assert.deepEqual(result, { outcome: 'ok', message: { ...message, topic: 't.b', data: { price: 2, extra: 1 } } });
  });

  it('drops a message a filter refuses', async () => {
    assert.deepEqual(await run([defineStep({ name: 'no', kind: 'filter', run: () => false })]), {
      outcome: 'dropped',
    });
  });

  it('sends a throwing, timed-out or ill-shaped step’s message to dead letter with the reason', async () => {
    const thrown = await run([
      defineStep({
        name: 'boom',
        kind: 'map',
        run: () => {
          throw new Error('bad');
        },
      }),
    ]);
    assert.deepEqual(thrown, { outcome: 'dead', step: 'boom', reason: 'Error: bad' });
    let aborted = false;
    const slow = await run([
      defineStep({
        name: 'slow',
        kind: 'enrich',
        timeout_ms: 20,
        run: (_m, ctx) =>
          new Promise((resolve) =>
            ctx.signal.addEventListener('abort', () => {
              aborted = true;
              resolve({});
            }),
          ),
      }),
    ]);
    assert.equal(slow.outcome, 'dead');
    assert.match((slow as { reason: string }).reason, /StepTimeoutError: timed out after 20 ms/);
    assert.ok(aborted);
    const shape = await run([{ name: 'odd', kind: 'filter', run: () => 'yes' as unknown as boolean }]);
    assert.match((shape as { reason: string }).reason, /not a boolean/);
  });
});

describe('middleware steps: a plugins folder outside the repository (docs/sources.md)', () => {
  const repo = resolve(fileURLToPath(import.meta.url), '../../../..');
  const pkg = "import { defineStep } from '@anode/relay-node/src/sources/plugin-api.ts';\n";
  const step = (name: string) => `defineStep({ name: '${name}', kind: 'filter', run: () => true })`;
  const folder = async (files: Record<string, string>, linked = false) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-plugins-'));
    await mkdir(dir, { recursive: true });
    for (const [file, text] of Object.entries(files)) await writeFile(join(dir, file), text);
    if (linked) await symlink(join(repo, 'node_modules'), join(dir, 'node_modules'));
    return dir;
  };

  it('loads a step importing @anode/relay-node only once the folder resolves it; a path import or none works as is', async () => {
    const dirs = [
      await folder({ 'pkg.ts': `${pkg}export default ${step('pkg')};` }),
      await folder({ 'pkg.ts': `${pkg}export default ${step('linked')};` }, true),
      await folder({
        'path.ts': `import { defineStep } from '${join(repo, 'relay-node/src/sources/plugin-api.ts')}';\nexport default ${step('path')};`,
        'plain.ts': "export default { name: 'plain', kind: 'filter', run: () => true };",
        'typed.ts':
          "import type { Step } from '@anode/relay-node/src/sources/plugin-api.ts';\n" +
          "const step: Step = { name: 'typed', kind: 'filter', run: () => true };\nexport default step;",
      }),
    ];
    try {
      await assert.rejects(loadSteps(dirs[0], log), /Cannot find package '@anode\/relay-node'/);
      assert.deepEqual([...(await loadSteps(dirs[1], log)).keys()], ['linked']);
      assert.deepEqual([...(await loadSteps(dirs[2], log)).keys()].sort(), ['path', 'plain', 'typed']);
    } finally {
      await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
    }
  });
});
