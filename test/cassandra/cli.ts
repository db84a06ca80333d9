// Runs a local Apache Cassandra 5.0 in the foreground for development:
//   node test/cassandra/cli.ts [start] [--data-dir DIR] [--port 9042] [--host 127.0.0.1] [--heap 1g] [--nodes N]
// Data persists in --data-dir (default ./.cassandra) between runs. Ctrl-C stops it.
// --nodes 3: a cluster on 127.0.0.1-3 (same ports, <data-dir>/node1..3), 512m heaps by default.
import { parseArgs } from 'node:util';
import { startCassandra, startCluster } from './cassandra-server.ts';

const USAGE =
  'usage: node test/cassandra/cli.ts [start] [--data-dir DIR] [--port 9042] [--host 127.0.0.1] [--heap 1g] [--nodes 1]';

function usage(message?: string): never {
  if (message) console.error(message);
  console.error(USAGE);
  process.exit(message ? 2 : 0);
}

function parseCli() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        'data-dir': { type: 'string', default: '.cassandra' },
        port: { type: 'string', default: '9042' },
        host: { type: 'string', default: '127.0.0.1' },
        heap: { type: 'string' },
        nodes: { type: 'string', default: '1' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    usage((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) usage();
  const extra = positionals.find((p) => p !== 'start');
  if (extra) usage(`unknown command: ${extra}`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) usage(`bad --port: ${values.port}`);
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) usage(`bad --nodes: ${values.nodes} (1-9)`);
  if (nodes > 1 && values.host !== '127.0.0.1') usage('--host is 127.0.0.1 with --nodes: the nodes take 127.0.0.1-N');
  const heap = values.heap ?? (nodes > 1 ? '512m' : '1g');
  return { dataDir: values['data-dir'], host: values.host, port, heap, nodes };
}

async function main() {
  const args = parseCli();
  const log = (line: string) => console.log(`[cassandra] ${line}`);
  let stop: (() => Promise<void>) | undefined;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    if (!stop) {
      // Still starting: exiting is enough, the library's exit hook kills the JVM.
      log(`${signal} during startup: Cassandra killed`);
      process.exit(130);
    }
    log(`${signal}: stopping Cassandra…`);
    await stop();
    log('stopped');
    process.exit(0);
  };
  // Installed before starting: Ctrl-C during a slow first start must work too.
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  try {
    if (args.nodes > 1) {
      const cluster = await startCluster({
        nodes: args.nodes,
        dataDir: args.dataDir,
        cqlPort: args.port,
        heap: args.heap,
        log,
      });
      stop = cluster.stop;
      log(
        `${args.nodes} nodes up: contact points ${cluster.contactPoints.join(',')}, local DC ${cluster.localDc}; ` +
          `data in ${args.dataDir}/node1..${args.nodes}; Ctrl-C to stop`,
      );
      const { code, signal } = await Promise.race(
        cluster.nodes.map((node) => node.server?.exited ?? new Promise<never>(() => {})),
      );
      if (!stopping) {
        console.error(`[cassandra] a node exited on its own (${signal ?? `code ${code}`}); stopping the others`);
        await cluster.stop();
        process.exit(1);
      }
      return;
    }
    const server = await startCassandra({
      dataDir: args.dataDir,
      host: args.host,
      cqlPort: args.port,
      heap: args.heap,
      log,
    });
    stop = server.stop;
    log(`data in ${server.dataDir}, log in ${server.logFile}; Ctrl-C to stop`);
    const { code, signal } = await server.exited;
    if (!stopping) {
      console.error(`[cassandra] Cassandra exited on its own (${signal ?? `code ${code}`}); see ${server.logFile}`);
      process.exit(1);
    }
  } catch (error) {
    console.error(`[cassandra] ${(error as Error).message}`);
    process.exit(1);
  }
}

await main();
