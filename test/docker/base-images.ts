// Builds the local images that stand in for registry images Docker Hub would give us (it is not
// reachable from CI): a Debian bookworm root file system made with debootstrap from the Debian
// mirror apt already uses, Node 24 on it (from the npm `node` package the lockfile pins), and
// Cassandra 5.0 on it (jars from Maven Central, Debian's OpenJDK 17). The slow part, debootstrap,
// is cached as a tarball; images that exist with the right versions are kept.
//   node test/docker/base-images.ts [--rebuild]
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jvmArgs, renderLogback, renderYaml } from '../cassandra/cassandra-config.ts';
import { DEFAULT_CASSANDRA_VERSION, resolveCassandraJars } from '../cassandra/cassandra-jars.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');

export const DEBIAN_IMAGE = 'anode/debian:bookworm';
export const BASE_NODE_IMAGE = 'anode/base-node:24';
export const CASSANDRA_IMAGE = 'anode/cassandra:5.0';

export type Log = (line: string) => void;

/** Runs a command; rejects with its output's tail when it fails. */
export function run(
  command: string,
  args: string[],
  options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv; quiet?: boolean; stderr?: boolean } = {},
): Promise<string> {
  return new Promise((ok, fail) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err = (err + chunk.toString()).slice(-16_000)));
    child.on('error', (error) => fail(new Error(`cannot run ${command}: ${error.message}`)));
    child.on('close', (code) => {
      // stderr: what it said there too (Compose v1 reports its steps there), after its output.
      if (code === 0) return ok(options.stderr ? `${out}\n${err}` : out);
      const tail = `${out.slice(-8_000)}\n${err}`.trim();
      fail(new Error(`${command} ${args.join(' ')} exited with ${code}:\n${tail}`));
    });
    // A child that exits before reading its stdin makes this write fail with EPIPE; its exit code
    // already tells what happened, so the stream error must not become an uncaught exception.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

const imageLabel = async (image: string, label: string): Promise<string | undefined> => {
  try {
    const out = await run('docker', ['image', 'inspect', '--format', `{{index .Config.Labels "${label}"}}`, image]);
    return out.trim();
  } catch {
    return undefined;
  }
};

/** What an image is made from: when it changes (a new Node, an edited Dockerfile), it is rebuilt. */
const recipe = (...parts: string[]) => createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 16);

/** The CA certificates this machine adds to its trust store (a TLS-intercepting egress proxy). */
const LOCAL_CA_DIR = '/usr/local/share/ca-certificates';

export function cacheDir(): string {
  return process.env.ANODE_DOCKER_CACHE ?? '/var/cache/anode-docker';
}

/** The Debian mirror apt uses on this machine (deb822 `URIs:` or a one-line `deb` entry). */
function debianMirror(): string {
  const files = [
    '/etc/apt/sources.list',
    ...listDir('/etc/apt/sources.list.d').map((f) => `/etc/apt/sources.list.d/${f}`),
  ];
  for (const file of files) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const match =
      /^URIs:\s*(\S+\/debian)\/?\s*$/m.exec(text) ??
      /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s+bookworm\s/m.exec(text);
    if (match?.[1]) return match[1];
  }
  return 'http://deb.debian.org/debian';
}

const listDir = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);

/** A minimal Debian bookworm root file system as a tarball, made once with debootstrap. */
async function debianTarball(log: Log): Promise<string> {
  const tarball = join(cacheDir(), 'debian-bookworm-minbase.tar');
  if (existsSync(tarball)) return tarball;
  mkdirSync(cacheDir(), { recursive: true });
  const mirror = debianMirror();
  const root = mkdtempSync(join(cacheDir(), 'rootfs-'));
  const started = Date.now();
  log(`debootstrap bookworm from ${mirror} (first run only)…`);
  try {
    await run('debootstrap', ['--variant=minbase', 'bookworm', root, mirror]);
    // What the registry's -slim images leave out too: package lists, caches, docs.
    for (const dir of ['var/lib/apt/lists', 'var/cache/apt', 'usr/share/doc', 'usr/share/man', 'usr/share/locale']) {
      rmSync(join(root, dir), { recursive: true, force: true });
      mkdirSync(join(root, dir), { recursive: true });
    }
    writeFileSync(
      join(root, 'etc/apt/sources.list'),
      `deb ${mirror} bookworm main\ndeb ${mirror} bookworm-updates main\n`,
    );
    const partial = `${tarball}.partial-${process.pid}`;
    await run('tar', ['-C', root, '--numeric-owner', '-cf', partial, '.']);
    renameSync(partial, tarball);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  log(`debootstrap done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return tarball;
}

async function debianImage(log: Log, rebuild: boolean): Promise<void> {
  if (!rebuild && (await imageLabel(DEBIAN_IMAGE, 'anode.base')) === 'debian-bookworm-minbase') return;
  const tarball = await debianTarball(log);
  log(`docker import ${DEBIAN_IMAGE}`);
  await run('docker', [
    'import',
    '--change',
    'LABEL anode.base=debian-bookworm-minbase',
    '--change',
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    '--change',
    'CMD ["bash"]',
    tarball,
    DEBIAN_IMAGE,
  ]);
}

/** npm itself (the base image's build tools), fetched once with `npm pack`. */
async function npmPackage(log: Log): Promise<string> {
  const pinned = /^npm@(.+)$/.exec(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).packageManager ?? '');
  const version = pinned?.[1] ?? '11';
  const dir = join(cacheDir(), `npm-${version}`);
  const existing = listDir(dir).find((f) => f.endsWith('.tgz'));
  if (existing) return join(dir, existing);
  mkdirSync(dir, { recursive: true });
  log(`npm pack npm@${version}`);
  const name = (await run('npm', ['pack', `npm@${version}`, '--pack-destination', dir, '--silent'])).trim();
  return join(dir, name.split('\n').at(-1) as string);
}

async function baseNodeImage(log: Log, rebuild: boolean): Promise<void> {
  const nodeBinary = join(ROOT, 'node_modules/node/bin/node');
  if (!existsSync(nodeBinary)) throw new Error(`${nodeBinary} is missing: run npm ci first (it brings Node 24)`);
  const version = (await run(nodeBinary, ['--version'])).trim().replace(/^v/, '');
  const dockerfile = readFileSync(join(HERE, 'base-node.Dockerfile'), 'utf8');
  const localCas = listDir(LOCAL_CA_DIR).filter((f) => f.endsWith('.crt'));
  const wanted = recipe(version, dockerfile, ...localCas.map((f) => readFileSync(join(LOCAL_CA_DIR, f), 'utf8')));
  if (!rebuild && (await imageLabel(BASE_NODE_IMAGE, 'anode.recipe')) === wanted) return;
  const context = mkdtempSync(join(tmpdir(), 'anode-base-node-'));
  try {
    copyFileSync(nodeBinary, join(context, 'node'));
    // npm in the build stage must trust what this machine trusts to reach its registry.
    mkdirSync(join(context, 'ca'));
    writeFileSync(join(context, 'ca', '.keep'), '');
    for (const file of localCas) copyFileSync(join(LOCAL_CA_DIR, file), join(context, 'ca', file));
    mkdirSync(join(context, 'npm'));
    await run('tar', ['-xzf', await npmPackage(log), '-C', join(context, 'npm'), '--strip-components=1']);
    copyFileSync(join(HERE, 'base-node.Dockerfile'), join(context, 'Dockerfile'));
    log(`docker build ${BASE_NODE_IMAGE} (Node ${version})`);
    await run('docker', [
      'build',
      '-q',
      '--build-arg',
      `NODE_VERSION=${version}`,
      '--label',
      `anode.recipe=${wanted}`,
      '-t',
      BASE_NODE_IMAGE,
      context,
    ]);
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

/** cassandra.yaml with the container's address left as __ANODE_HOST__ (the entrypoint fills it in). */
function cassandraConf(dir: string, jammJar: string): void {
  const data = '/var/lib/cassandra';
  const yaml = renderYaml({ dataDir: data, host: '__ANODE_HOST__', cqlPort: 9042, storagePort: 7000 }).replace(
    /^rpc_address: .*$/m,
    // Clients (other containers, the healthcheck) connect on any address; they are told this one.
    'rpc_address: "0.0.0.0"\nbroadcast_rpc_address: "__ANODE_HOST__"',
  );
  writeFileSync(join(dir, 'cassandra.yaml.template'), yaml);
  writeFileSync(join(dir, 'logback.xml'), renderLogback(`${data}/logs/system.log`));
  const args = jvmArgs({
    libDir: '/opt/cassandra/lib',
    jammJar: `/opt/cassandra/lib/${jammJar}`,
    heap: '1g',
    configFile: `${data}/cassandra.yaml`,
    logbackFile: '/etc/cassandra/logback.xml',
    dataDir: data,
    // Skips fsync of system tables only (a test and demo image; application data is synced).
    fast: true,
    extra: [],
  }).filter((arg) => !/^-Xm[sx]/.test(arg)); // the entrypoint sets the heap from CASSANDRA_HEAP
  writeFileSync(join(dir, 'jvm.args'), args.map((arg) => JSON.stringify(arg)).join('\n') + '\n');
}

async function cassandraImage(log: Log, rebuild: boolean): Promise<void> {
  const version = process.env.ANODE_CASSANDRA_VERSION ?? DEFAULT_CASSANDRA_VERSION;
  const wanted = recipe(
    version,
    readFileSync(join(HERE, 'cassandra.Dockerfile'), 'utf8'),
    readFileSync(join(HERE, 'cassandra-entrypoint.sh'), 'utf8'),
    readFileSync(join(HERE, '../cassandra/cassandra-config.ts'), 'utf8'),
  );
  if (!rebuild && (await imageLabel(CASSANDRA_IMAGE, 'anode.recipe')) === wanted) return;
  const jars = await resolveCassandraJars({ version, log });
  const context = mkdtempSync(join(tmpdir(), 'anode-cassandra-'));
  try {
    mkdirSync(join(context, 'lib'));
    for (const jar of readdirSync(jars.libDir)) copyFileSync(join(jars.libDir, jar), join(context, 'lib', jar));
    mkdirSync(join(context, 'conf'));
    cassandraConf(join(context, 'conf'), jars.jammJar.split('/').at(-1) as string);
    copyFileSync(join(HERE, 'cassandra-entrypoint.sh'), join(context, 'cassandra-entrypoint.sh'));
    copyFileSync(join(HERE, 'cassandra.Dockerfile'), join(context, 'Dockerfile'));
    log(`docker build ${CASSANDRA_IMAGE} (Cassandra ${version}, OpenJDK 17)`);
    await run('docker', [
      'build',
      '-q',
      '--build-arg',
      `CASSANDRA_VERSION=${version}`,
      '--label',
      `anode.recipe=${wanted}`,
      '-t',
      CASSANDRA_IMAGE,
      context,
    ]);
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

/** Builds whichever stand-in images are missing or stale (all of them with `rebuild`). */
export async function buildBaseImages(options: { log?: Log; rebuild?: boolean; cassandra?: boolean } = {}) {
  const log = options.log ?? (() => {});
  const rebuild = options.rebuild ?? false;
  await debianImage(log, rebuild);
  await baseNodeImage(log, rebuild);
  if (options.cassandra ?? true) await cassandraImage(log, rebuild);
}

if (import.meta.main) {
  const started = Date.now();
  await buildBaseImages({
    log: (line) => console.log(`[base-images] ${line}`),
    rebuild: process.argv.includes('--rebuild'),
  });
  console.log(
    `[base-images] ready in ${((Date.now() - started) / 1000).toFixed(0)} s: ${DEBIAN_IMAGE}, ${BASE_NODE_IMAGE}, ${CASSANDRA_IMAGE}`,
  );
}
