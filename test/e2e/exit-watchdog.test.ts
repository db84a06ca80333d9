import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from '../docs/check-links.ts';

const run = promisify(execFile);

/** `npm test` loads test/tools/exit-watchdog.ts into each file's process: a file that does not exit fails, naming its handle. */
describe('the test runner’s exit watchdog', () => {
  const dir = mkdtempSync(join(tmpdir(), 'anode-watchdog-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const runFile = async (name: string, body: string) => {
    const file = join(dir, name);
    writeFileSync(file, `import { it } from 'node:test';\n${body}\n`);
    const env: NodeJS.ProcessEnv = { ...process.env, ANODE_TEST_EXIT_GRACE_MS: '300' };
    delete env.NODE_TEST_CONTEXT; // this file's own process is a test child; the runner below is not
    const args = ['--import', join(ROOT, 'test/tools/exit-watchdog.ts'), '--test', '--test-reporter=spec', file];
    try {
      const { stdout, stderr } = await run(process.execPath, args, { env, timeout: 60_000 });
      return { code: 0, output: stdout + stderr };
    } catch (error) {
      const failed = error as { code?: number; killed?: boolean; stdout: string; stderr: string };
      assert.equal(failed.killed, false, 'the runner was killed: the watchdog did not end the file');
      return { code: failed.code ?? -1, output: failed.stdout + failed.stderr };
    }
  };

  it('fails a file whose tests pass but that leaves a timer running, and names it', async () => {
    const { code, output } = await runFile('leaks.test.mjs', "it('passes', () => { setInterval(() => {}, 1_000); });");
    assert.notEqual(code, 0, output);
    assert.match(output, /leaks\.test\.mjs: still running 0\.3 s after its last test; open: .*Timeout/);
  });

  it('lets a file whose top-level after hook takes longer pass when it says so (exitGraceAtLeast)', async () => {
    const watchdog = join(ROOT, 'test/tools/exit-watchdog.ts');
    const slow = "after(() => new Promise((resolve) => setTimeout(resolve, 1_000)));\nit('passes', () => {});";
    const { code: without, output: failed } = await runFile(
      'slow.test.mjs',
      `import { after } from 'node:test';\n${slow}`,
    );
    assert.notEqual(without, 0, 'the grace counts the file’s own top-level hooks');
    assert.match(failed, /still running 0\.3 s after its last test/);
    const { code, output } = await runFile(
      'slow-said.test.mjs',
      `import { after } from 'node:test';\nimport { exitGraceAtLeast } from '${watchdog}';\nexitGraceAtLeast(10_000);\n${slow}`,
    );
    assert.equal(code, 0, output);
  });

  it('lets a file that closes what it opens pass', async () => {
    const { code, output } = await runFile(
      'clean.test.mjs',
      "it('passes', () => { clearInterval(setInterval(() => {}, 1_000)); });",
    );
    assert.equal(code, 0, output);
    assert.match(output, /ℹ pass 1/);
  });
});
