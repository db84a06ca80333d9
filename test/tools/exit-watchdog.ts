// Loaded into every test file's process by `npm test` (`--import`): a file whose tests are done
// but that does not exit (a timer, socket or child left open) fails within two minutes, naming
// what is still open, instead of holding the whole run until CI's 60-minute bound. We do not use
// --test-force-exit, which can drop verdicts (docs/development.md).
import { after } from 'node:test';

/**
 * From the file's first root `after` hook: the file's own top-level hooks (a Cassandra stop takes
 * up to 20 s) run within it. ANODE_TEST_EXIT_GRACE_MS sets it (its own test uses a short one).
 */
const GRACE_MS = Number(process.env.ANODE_TEST_EXIT_GRACE_MS) || 120_000;

// Only in the processes that run a test file, not in the runner that spawns them.
if (process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  after(() => {
    setTimeout(() => {
      const open = process.getActiveResourcesInfo().filter((kind) => kind !== 'PipeWrap');
      process.stderr.write(
        `${process.argv[1] ?? 'this test file'}: still running ${GRACE_MS / 1000} s after its last test; ` +
          `open: ${open.join(', ') || 'nothing but pipes'}. Close it in an after hook.\n`,
      );
      process.exit(1);
    }, GRACE_MS).unref();
  });
}
