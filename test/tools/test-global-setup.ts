// The test runner's global setup (`npm test` passes it as --test-global-setup): it runs once, in
// the runner's process, before the first test file, and its teardown after the last one. Each
// file runs in a child process that inherits the environment set here.
import { hostSharedCassandra, SHARED_CASSANDRA_ENV, type SharedCassandraHost } from '../cassandra/shared-cassandra.ts';

let cassandra: SharedCassandraHost | undefined;

export async function globalSetup(): Promise<void> {
  // Only served here; the node starts when the first file asks (test/cassandra/shared-cassandra.ts).
  cassandra = await hostSharedCassandra((line) => process.stderr.write(`[shared cassandra] ${line}\n`));
  process.env[SHARED_CASSANDRA_ENV] = cassandra.url;
}

export async function globalTeardown(): Promise<void> {
  await cassandra?.close();
}
