// Loaded into every test file's process by `npm test` (`--import`): a file whose tests are done
// but that does not exit (a timer, socket or child left open) fails within two minutes, naming
// what is still open, instead of holding the whole run until CI's 60-minute bound. We do not use
// --test-force-exit, which can drop verdicts (docs/development.md).
import { after } from 'node:test';

/**
 * From the file's first root `after` hook, which runs before the file's own top-level hooks (a
 * Cassandra stop takes up to 20 s): those run within it. ANODE_TEST_EXIT_GRACE_MS sets it (its own
 * test uses a short one); a file whose top-level hooks may take longer raises it (exitGraceAtLeast).
 */
let graceMs = Number(process.env.ANODE_TEST_EXIT_GRACE_MS) || 120_000;

/**
 * For a file whose own top-level `after` hooks may take up to `ms` (test/docker removes its
 * images): the watchdog waits at least that long. Called at the file's top level.
 */
export function exitGraceAtLeast(ms: number): void {
  graceMs = Math.max(graceMs, ms);
}

// Only in the processes that run a test file, not in the runner that spawns them.
if (process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  after(() => {
    const waited = graceMs;
    setTimeout(() => {
      const open = process.getActiveResourcesInfo().filter((kind) => kind !== 'PipeWrap');
      process.stderr.write(
        `${process.argv[1] ?? 'this test file'}: still running ${waited / 1000} s after its last test; ` +
          `open: ${open.join(', ') || 'nothing but pipes'}. Close it in an after hook.\n`,
      );
      process.exit(1);
    }, waited).unref();
  });
}
