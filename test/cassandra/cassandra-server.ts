// Starts a real single-node Apache Cassandra 5.0 (the JVM server from Maven Central)
// for tests and for local development, and hands back a handle that stops it.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { type AddressInfo, createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import cassandra from 'cassandra-driver';
import { JPMS_FLAGS, jvmArgs, renderLogback, renderYaml, ringTokens } from './cassandra-config.ts';
import { resolveCassandraJars } from './cassandra-jars.ts';
import { dieWithOwner } from '../tools/die-with-owner.ts';

export type CassandraOptions = {
  /**
   * Kept between runs when given. Otherwise a temp dir, removed when this process
   * exits rather than by stop(), so stop() then startCassandra({ dataDir }) restarts
   * the same node with its data (an outage, as tests simulate it).
   */
  dataDir?: string;
  host?: string;
  /** Native transport (CQL) port; a free one is picked when absent. */
  cqlPort?: number;
  /** Inter-node port; a free one is picked when absent. */
  storagePort?: number;
  /** -Xmx, e.g. '512m' or '1g' (default); -Xms is the smaller of it and 256m. */
  heap?: string;
  /** Appended to the JVM flags, e.g. ['-Dcassandra.jmx.local.port=7199'] for nodetool. */
  jvmArgs?: string[];
  /** Tests: no fsync on system tables (cassandra.unsafesystem). */
  fast?: boolean;
  /** The commit log's sync mode (see NodeLayout); default periodic, as Cassandra's own. */
  commitlogSync?: 'periodic' | 'batch';
  /** Bound on JVM start until CQL answers; jar resolution is not counted. */
  timeoutMs?: number;
  /** Between SIGTERM and SIGKILL in stop(). */
  stopGraceMs?: number;
  version?: string;
  cacheDir?: string;
  log?: (line: string) => void;
  /** A cluster member: the seed addresses and this node's ring token (see startCluster). */
  seeds?: string[];
  initialToken?: string;
};

export type CassandraServer = {
  host: string;
  port: number;
  storagePort: number;
  dataDir: string;
  logFile: string;
  /** What the node reports in system.local, e.g. '5.0.9'. */
  releaseVersion: string;
  pid: number;
  startupMs: number;
  /** Settles when the JVM ends, whether through stop() or on its own. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
};

const LOCAL_DC = 'datacenter1'; // what SimpleSnitch reports

export async function startCassandra(options: CassandraOptions = {}): Promise<CassandraServer> {
  const log = options.log ?? (() => {});
  const host = options.host ?? '127.0.0.1';
  const java = findJava();
  if (!java) throw new Error('java not found: install Java 17 (or 11), or set JAVA_HOME');
  const javaMajor = javaMajorVersion(java);
  if (javaMajor !== 11 && javaMajor !== 17) {
    throw new Error(`Cassandra 5.0 runs on Java 11 or 17, but ${java} is Java ${javaMajor}; set JAVA_HOME`);
  }
  const jars = await resolveCassandraJars({ version: options.version, cacheDir: options.cacheDir, log });
  const dataDir = options.dataDir ? resolve(options.dataDir) : await mkdtemp(join(tmpdir(), 'anode-cassandra-'));
  if (!options.dataDir) tempDirs.add(dataDir);
  mkdirSync(join(dataDir, 'logs'), { recursive: true });
  mkdirSync(join(dataDir, 'triggers'), { recursive: true });

  // Free ports are picked then released, so another process can grab one before
  // Cassandra binds it; retry with fresh ports when that is what went wrong.
  const portsArePicked = options.cqlPort === undefined || options.storagePort === undefined;
  for (let attempt = 1; ; attempt++) {
    const [cqlPort, storagePort] = await pickPorts(host, options.cqlPort, options.storagePort);
    log(
      `starting Cassandra ${jars.version} (Java ${javaMajor}) in ${dataDir}, CQL ${host}:${cqlPort}, storage ${storagePort}…`,
    );
    const node = launch({ java, jars, host, cqlPort, storagePort, dataDir, options });
    try {
      const releaseVersion = await waitForCql(node, options.timeoutMs ?? 120_000);
      const startupMs = Date.now() - node.startedAt;
      log(`Cassandra ${releaseVersion} ready at ${host}:${cqlPort} (CQL) in ${(startupMs / 1000).toFixed(1)} s`);
      return {
        host,
        port: cqlPort,
        storagePort,
        dataDir,
        logFile: node.logFile,
        releaseVersion,
        pid: node.child.pid ?? -1,
        startupMs,
        exited: node.exited,
        stop: once(() => terminate(node.child, options.stopGraceMs ?? 20_000)),
      };
    } catch (error) {
      await terminate(node.child, 0);
      const bindClash = /Address already in use|Failed to bind/i.test(readTail(node.logFile) + node.consoleTail());
      if (bindClash && portsArePicked && attempt < 3) {
        log('a picked port was taken meanwhile; retrying with new ports');
        continue;
      }
      // Keep a failed temp dir: its logs/ holds more than the error can quote.
      tempDirs.delete(dataDir);
      throw error;
    }
  }
}

export type ClusterOptions = Omit<CassandraOptions, 'host' | 'seeds' | 'initialToken' | 'dataDir'> & {
  /** Nodes on 127.0.0.1, 127.0.0.2, …: same ports on each address, own folder and token. */
  nodes: number;
  /** Each node keeps its data in <dataDir>/node<N>; a temp dir (removed at exit) when absent. */
  dataDir?: string;
};

export type ClusterNode = {
  readonly host: string;
  readonly dataDir: string;
  /** This node's JMX port on 127.0.0.1, for nodetool (each node its own; kept across restarts). */
  readonly jmxPort: number;
  /** The running JVM, or undefined while the node is down. */
  readonly server: CassandraServer | undefined;
  /** SIGKILL: a crash, no shutdown announcement (what the tests inflict). */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after the grace time. */
  stop(): Promise<void>;
  /** Start again with the same data, address and ports. */
  start(): Promise<void>;
};

export type CassandraCluster = {
  nodes: ClusterNode[];
  /** host:port of every node, for `cassandra_contact_points`. */
  contactPoints: string[];
  port: number;
  storagePort: number;
  /** What SimpleSnitch reports, for `cassandra_local_dc` and NetworkTopologyStrategy. */
  localDc: string;
  stop(): Promise<void>;
};

/**
 * A real multi-node cluster on one machine: node N listens on 127.0.0.N with the same CQL and
 * storage ports as the others (Cassandra's inter-node protocol has one storage port per
 * cluster), its own folder and an evenly spaced token; 127.0.0.1 is the seed and starts first.
 */
export async function startCluster(options: ClusterOptions): Promise<CassandraCluster> {
  const log = options.log ?? (() => {});
  const hosts = Array.from({ length: options.nodes }, (_, i) => `127.0.0.${i + 1}`);
  const tokens = ringTokens(options.nodes);
  const root = options.dataDir ? resolve(options.dataDir) : await mkdtemp(join(tmpdir(), 'anode-cassandra-cluster-'));
  if (!options.dataDir) tempDirs.add(root);
  const [cqlPort, storagePort] = await pickPortsOnAll(hosts, options.cqlPort, options.storagePort);
  // JMX listens on 127.0.0.1 whatever the node's address: one port per node.
  const jmxPorts: number[] = [];
  for (let i = 0; i < options.nodes; i++) {
    let port = await freePort();
    while (jmxPorts.includes(port) || port === cqlPort || port === storagePort) port = await freePort();
    jmxPorts.push(port);
  }
  const nodes = hosts.map((host, i): ClusterNode & { server: CassandraServer | undefined } => {
    const dataDir = join(root, `node${i + 1}`);
    const jmxPort = jmxPorts[i] as number;
    const node = {
      host,
      dataDir,
      jmxPort,
      server: undefined as CassandraServer | undefined,
      async start() {
        if (node.server) return;
        node.server = await startCassandra({
          ...options,
          jvmArgs: [...(options.jvmArgs ?? []), `-Dcassandra.jmx.local.port=${jmxPort}`],
          host,
          dataDir,
          cqlPort,
          storagePort,
          seeds: [hosts[0] as string],
          initialToken: tokens[i],
          log: (line) => log(`node${i + 1}: ${line}`),
        });
        // A node that dies on its own is down too (start() brings it back).
        const running = node.server;
        void running.exited.then(() => {
          if (node.server === running) node.server = undefined;
        });
      },
      async kill() {
        const server = node.server;
        node.server = undefined;
        if (!server) return;
        process.kill(server.pid, 'SIGKILL');
        await server.exited;
      },
      async stop() {
        const server = node.server;
        node.server = undefined;
        await server?.stop();
      },
    };
    return node;
  });
  try {
    // The seed first, then one node at a time (auto_bootstrap is off: nothing to stream): JVMs
    // starting together on a small machine each take as long as all of them in a row, and a
    // node that joins while another is still starting sees gossip flap.
    for (const node of nodes) await node.start();
    await waitForRing(hosts[0] as string, cqlPort, options.nodes, options.timeoutMs ?? 120_000);
  } catch (error) {
    await Promise.all(nodes.map((node) => node.kill()));
    throw error;
  }
  return {
    nodes,
    contactPoints: hosts.map((host) => `${host}:${cqlPort}`),
    port: cqlPort,
    storagePort,
    localDc: LOCAL_DC,
    stop: async () => {
      await Promise.all(nodes.map((node) => node.stop()));
    },
  };
}

/** Ports free on every address at once (each node binds the same two). */
async function pickPortsOnAll(hosts: string[], cql?: number, storage?: number): Promise<[number, number]> {
  for (let attempt = 1; ; attempt++) {
    const [c, s] = await pickPorts(hosts[0] as string, cql, storage);
    try {
      for (const host of hosts.slice(1)) await pickPorts(host, c, s);
      return [c, s];
    } catch (error) {
      if ((cql !== undefined && storage !== undefined) || attempt >= 10) throw error;
    }
  }
}

/**
 * Until the seed sees every node in its peers table and a driver connects to each (gossip has
 * converged). A fresh driver per probe: one kept across probes backs off exponentially from a
 * host it once found down, and may not learn a peer whose row was incomplete when it connected.
 */
async function waitForRing(host: string, port: number, nodes: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new cassandra.Client({
      contactPoints: [host],
      protocolOptions: { port },
      localDataCenter: LOCAL_DC,
    });
    let seen: string;
    try {
      const peers = (await client.execute('SELECT peer, native_address FROM system.peers_v2')).rows;
      const up = client
        .getState()
        .getConnectedHosts()
        .map((h) => h.address);
      if (peers.length === nodes - 1 && up.length === nodes) return;
      const listed = peers.map((r) => `${r.peer}${r.native_address ? '' : ' (no native address yet)'}`);
      seen = `${peers.length + 1} nodes known (peers: ${listed.join(', ') || 'none'}), ${up.length} connected (${up.join(', ')})`;
    } catch (error) {
      seen = `the seed did not answer: ${(error as Error).message}`;
    } finally {
      await client.shutdown();
    }
    if (Date.now() > deadline) throw new Error(`cluster did not form: ${seen}`);
    await sleep(500);
  }
}

/** The java binary Cassandra would use: $JAVA_HOME/bin/java, else the first on PATH. */
export function findJava(): string | null {
  const candidates = [
    ...(process.env.JAVA_HOME ? [join(process.env.JAVA_HOME, 'bin', 'java')] : []),
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'java')),
  ];
  return candidates.find(isExecutable) ?? null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function javaMajorVersion(java: string): number {
  // `java -version` prints e.g. `openjdk version "17.0.15"` or `"1.8.0_402"` on stderr.
  const out = spawnSync(java, ['-version'], { encoding: 'utf8' }).stderr ?? '';
  const match = /version "(\d+)(?:\.(\d+))?/.exec(out);
  if (!match) throw new Error(`cannot tell the Java version from \`${java} -version\`:\n${out}`);
  return match[1] === '1' ? Number(match[2]) : Number(match[1]);
}

// Port 0 asks the OS for a free port. A port that was given is test-bound the same
// way, so a busy 9042 (another Cassandra?) fails here, clearly, instead of our CQL
// probe happily talking to the other server. All are held until all are bound, so
// two picked ports never coincide.
async function pickPorts(host: string, cql?: number, storage?: number): Promise<[number, number]> {
  const wanted = [cql ?? 0, storage ?? 0];
  const results = await Promise.allSettled(wanted.map((port) => listenOn(host, port)));
  const ports = results.map((r) => (r.status === 'fulfilled' ? (r.value.address() as AddressInfo).port : 0));
  await Promise.all(results.map((r) => r.status === 'fulfilled' && new Promise((ok) => r.value.close(ok))));
  results.forEach((r, i) => {
    if (r.status === 'rejected') {
      const code = (r.reason as NodeJS.ErrnoException).code;
      const hint = code === 'EADDRINUSE' ? ' (another Cassandra already running?)' : '';
      throw new Error(`cannot use port ${wanted[i]} on ${host}: ${code ?? r.reason}${hint}`);
    }
  });
  return [ports[0] as number, ports[1] as number];
}

function listenOn(host: string, port: number): Promise<Server> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(port, host, () => ok(server));
  });
}

type LaunchedNode = {
  child: ChildProcess;
  host: string;
  cqlPort: number;
  logFile: string;
  consoleFile: string;
  startedAt: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  consoleTail(): string;
  /** The line where Cassandra declared its startup failed, if it did. */
  fatalLine(): string | undefined;
};

function launch(args: {
  java: string;
  jars: { libDir: string; jammJar: string };
  host: string;
  cqlPort: number;
  storagePort: number;
  dataDir: string;
  options: CassandraOptions;
}): LaunchedNode {
  const { dataDir } = args;
  const { seeds, initialToken, commitlogSync } = args.options;
  const configFile = join(dataDir, 'cassandra.yaml');
  const logbackFile = join(dataDir, 'logback.xml');
  const logFile = join(dataDir, 'logs', 'system.log');
  const consoleFile = join(dataDir, 'logs', 'console.log');
  writeFileSync(configFile, renderYaml({ ...args, seeds, initialToken, commitlogSync }));
  writeFileSync(logbackFile, renderLogback(logFile));
  writeFileSync(logFile, ''); // one run per file, so a failure's tail is this run's
  const argv = jvmArgs({
    libDir: args.jars.libDir,
    jammJar: args.jars.jammJar,
    heap: args.options.heap ?? '1g',
    configFile,
    logbackFile,
    dataDir,
    fast: args.options.fast ?? false,
    extra: args.options.jvmArgs ?? [],
  });
  // Own process group: a terminal's Ctrl-C reaches only us, and we stop Cassandra
  // deliberately (SIGTERM, then SIGKILL) instead of racing its shutdown hooks.
  const child = spawn(args.java, argv, {
    cwd: dataDir,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    // As cassandra-env.sh does: caps glibc's per-thread malloc arenas (native memory).
    env: { MALLOC_ARENA_MAX: '4', ...process.env },
  });
  trackForExit(child);
  // The exit hooks cannot run on SIGKILL (a runner killed at CI's bound, an OOM): then a watcher does.
  if (child.pid !== undefined) dieWithOwner(child.pid);
  // stdout/stderr carry what logback cannot: JVM flag errors, crashes, WARN+ lines.
  const consoleOut = createWriteStream(consoleFile);
  let tail: string[] = [];
  let fatal: string | undefined;
  const onChunk = (chunk: Buffer) => {
    consoleOut.write(chunk);
    // Stack frames crowd out the messages that explain anything; keep messages only.
    const lines = chunk
      .toString()
      .split('\n')
      .filter((line) => line.trim() && !/^\s+(at |\.\.\. \d+ more)/.test(line));
    // After a failed start the JVM can take ~30 s to exit (shutdown hooks), so the
    // failure is taken from this line rather than from the exit.
    fatal ??= lines.find((line) => line.includes('encountered during startup'));
    tail = tail.concat(lines).slice(-30);
  };
  child.stdout?.on('data', onChunk);
  child.stderr?.on('data', onChunk);
  child.once('close', () => consoleOut.end());
  return {
    child,
    host: args.host,
    cqlPort: args.cqlPort,
    logFile,
    consoleFile,
    startedAt: Date.now(),
    exited: new Promise((ok) => child.once('exit', (code, signal) => ok({ code, signal }))),
    consoleTail: () => tail.join('\n'),
    fatalLine: () => fatal,
  };
}

async function waitForCql(node: LaunchedNode, timeoutMs: number): Promise<string> {
  const deadline = node.startedAt + timeoutMs;
  let exit: string | null = null;
  node.child.once('exit', (code, signal) => {
    exit = `${signal ? `was killed by ${signal}` : `exited with code ${code}`} during startup`;
  });
  node.child.once('error', (error) => {
    exit = `could not be started (${error.message})`;
  });
  let lastError = '';
  while (Date.now() < deadline) {
    if (exit) break;
    const fatal = node.fatalLine();
    if (fatal) {
      exit = `failed: ${fatal.trim()}`;
      break;
    }
    // A cheap TCP probe first: the driver is slow to give up on a closed port.
    if (await portIsOpen(node.host, node.cqlPort)) {
      try {
        return await queryReleaseVersion(node.host, node.cqlPort);
      } catch (error) {
        lastError = (error as Error).message;
      }
    }
    await sleep(250);
  }
  const what = exit
    ? `Cassandra ${exit}`
    : `Cassandra did not answer CQL on ${node.host}:${node.cqlPort} within ${Math.round(timeoutMs / 1000)} s` +
      (lastError ? ` (last driver error: ${lastError})` : '');
  throw new Error(
    `${what}\n--- ${node.consoleFile} (JVM stdout/stderr: warnings, errors) ---\n${node.consoleTail() || '(empty)'}\n` +
      `--- tail of ${node.logFile} ---\n${readTail(node.logFile, 20) || '(empty)'}`,
  );
}

function portIsOpen(host: string, port: number): Promise<boolean> {
  return new Promise((ok) => {
    const socket = createConnection({ host, port, timeout: 1000 });
    const done = (open: boolean) => {
      socket.destroy();
      ok(open);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

async function queryReleaseVersion(host: string, port: number): Promise<string> {
  const client = new cassandra.Client({
    contactPoints: [host],
    protocolOptions: { port },
    localDataCenter: LOCAL_DC,
    socketOptions: { connectTimeout: 2000, readTimeout: 5000 },
  });
  try {
    const result = await client.execute('SELECT release_version FROM system.local');
    return String(result.first()?.get('release_version'));
  } finally {
    await client.shutdown();
  }
}

export function readTail(file: string, lines = 40): string {
  if (!existsSync(file)) return '';
  // Lines are capped: Cassandra logs its whole configuration as one huge line.
  const tail = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
  return tail.map((line) => (line.length > 400 ? `${line.slice(0, 400)}…` : line)).join('\n');
}

async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
  // Unref'd, or a pending grace timer would hold the caller's process open for graceMs.
  const timer = sleep(graceMs, 'timeout', { ref: false });
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => {
    running ??= fn();
    return running;
  };
}

// A Cassandra left behind by a crashed test run holds ports and gigabytes, so
// children die with us: on any exit, and on signals nobody else handles.
const liveChildren = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHooksInstalled = false;

function trackForExit(child: ChildProcess): void {
  if (!exitHooksInstalled) {
    exitHooksInstalled = true;
    process.on('exit', killAll);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      const onSignal = () => {
        // Someone else handles it (e.g. the CLI stopping gracefully): stay out of it.
        if (process.listenerCount(signal) > 1) return;
        killAll();
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal); // re-raise: default action, same exit status
      };
      process.on(signal, onSignal);
    }
  }
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

function killAll(): void {
  for (const child of liveChildren) child.kill('SIGKILL');
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // Best effort: it is under the OS temp dir anyway.
    }
  }
}

/**
 * Runs nodetool (its class ships in cassandra-all) against a node started with
 * `jvmArgs: ['-Dcassandra.jmx.local.port=<port>']`; resolves with its output, rejects on failure.
 */
export async function nodetool(
  jmxPort: number,
  args: string[],
  options: { version?: string; home?: string } = {},
): Promise<string> {
  const java = findJava();
  if (!java) throw new Error('java not found');
  const { libDir } = await resolveCassandraJars({ version: options.version });
  const child = spawn(
    java,
    [
      '-Xmx128m',
      ...JPMS_FLAGS,
      // nodetool keeps a history file under ~/.cassandra: put it beside the node's data instead.
      ...(options.home ? [`-Duser.home=${options.home}`] : []),
      '-cp',
      join(libDir, '*'),
      'org.apache.cassandra.tools.NodeTool',
      '-h',
      '127.0.0.1',
      '-p',
      String(jmxPort),
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((ok) => child.once('close', ok));
  if (code !== 0) throw new Error(`nodetool ${args.join(' ')} exited with ${code}:\n${out}`);
  return out;
}

/** A free TCP port on 127.0.0.1 (for a JMX port; released before Cassandra binds it). */
export async function freePort(): Promise<number> {
  const server = await listenOn('127.0.0.1', 0);
  const { port } = server.address() as AddressInfo;
  await new Promise((ok) => server.close(ok));
  return port;
}
