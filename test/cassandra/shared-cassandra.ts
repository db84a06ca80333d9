// One real Cassandra node shared by the test files of a run. A JVM start costs ~20-25 s, and the
// runner runs files one after another on a small machine: a start per file was minutes of CI.
// The test runner's process (test/tools/test-global-setup.ts) serves the node, started on the
// first file's request, to the files it spawns; each file keeps to its own keyspaces. A file that
// needs a node of its own (its own settings, a restart, a stop, SIGSTOP) calls startCassandra.
import { request, createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CassandraServer } from './cassandra-server.ts';

/** Where the runner's process serves the shared node, in the environment of the files it spawns. */
export const SHARED_CASSANDRA_ENV = 'ANODE_TEST_SHARED_CASSANDRA';

/** What the runner's process tells a file about the node (the handle minus what is process-bound). */
type SharedNode = Omit<CassandraServer, 'exited' | 'stop'>;
type Answer = { ok: true; node: SharedNode } | { ok: false; error: string };

/**
 * The run's shared Cassandra when the runner serves one (`npm test`), else a node of this file's
 * own (`node --test test/cassandra/paging.test.ts`), started as `startCassandra({ fast: true })`.
 * On the shared node, stop() does nothing (the runner stops it after the last file) and `exited`
 * never settles; `pid` is the shared JVM, which no file may pause or kill.
 */
export async function sharedCassandra(options: { log?: (line: string) => void } = {}): Promise<CassandraServer> {
  const log = options.log ?? (() => {});
  const url = process.env[SHARED_CASSANDRA_ENV];
  if (!url) {
    const { startCassandra } = await import('./cassandra-server.ts');
    return startCassandra({ fast: true, log });
  }
  log(`using the test run's shared Cassandra (${url}; the first file to ask waits for its start)…`);
  const answer = await ask(url);
  if (!answer.ok) throw new Error(`the test run's shared Cassandra is not available: ${answer.error}`);
  const { node } = answer;
  log(`shared Cassandra ${node.releaseVersion} at ${node.host}:${node.port} (CQL), data in ${node.dataDir}`);
  return { ...node, exited: new Promise(() => {}), stop: async () => {} };
}

/** One request, no keep-alive: an open socket would hold the file's process after its last test. */
function ask(url: string): Promise<Answer> {
  return new Promise((ok, fail) => {
    const req = request(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        try {
          ok(JSON.parse(body) as Answer);
        } catch {
          fail(new Error(`the shared Cassandra's server at ${url} answered HTTP ${res.statusCode}: ${body}`));
        }
      });
      res.on('error', fail);
    });
    req.on('error', (error) =>
      fail(new Error(`cannot reach the shared Cassandra's server at ${url} (the test runner): ${error.message}`)),
    );
    req.end();
  });
}

export type SharedCassandraHost = {
  /** For SHARED_CASSANDRA_ENV. */
  url: string;
  /** Stops the node if one was started, and the server. */
  close(): Promise<void>;
};

/**
 * In the test runner's process: serves the shared node over HTTP on loopback. The node starts on
 * the first request (a run without Cassandra files never starts one) and every request waits for
 * it; a start that failed, or a node that died since, is answered with its error and log tail.
 */
export async function hostSharedCassandra(log: (line: string) => void): Promise<SharedCassandraHost> {
  let starting: Promise<CassandraServer> | undefined;
  let died: string | undefined;
  let closing = false;
  const start = async () => {
    const { startCassandra, readTail } = await import('./cassandra-server.ts');
    const node = await startCassandra({ fast: true, log });
    void node.exited.then(({ code, signal }) => {
      if (closing) return;
      died =
        `the shared Cassandra (pid ${node.pid}) ${signal ? `was killed by ${signal}` : `exited with code ${code}`} ` +
        `during the run\n--- tail of ${node.logFile} ---\n${readTail(node.logFile, 20) || '(empty)'}`;
      log(died);
    });
    return node;
  };
  const answer = async (): Promise<Answer> => {
    try {
      const { exited: _exited, stop: _stop, ...node } = await (starting ??= start());
      return died ? { ok: false, error: died } : { ok: true, node };
    } catch (error) {
      return { ok: false, error: (error as Error).message };
    }
  };
  const server: Server = createServer((req, res) => {
    void answer().then((body) => {
      res.writeHead(body.ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', ok);
  });
  // Never what holds the runner's process open (the teardown, which runs after failures and on
  // SIGINT too, stops the node; cassandra-server.ts kills it if the process exits first).
  server.unref();
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/cassandra`,
    async close() {
      closing = true;
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
      const node = await starting?.catch(() => undefined);
      await node?.stop();
    },
  };
}
