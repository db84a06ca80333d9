// Docker and Compose for the deploy tests: the relay image build, one compose project per run
// (unique name, host ports chosen free at run time on 127.0.0.1), its teardown, and the removal
// of what runs that were killed left behind.
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '../helpers/mesh.ts';
import { BASE_NODE_IMAGE, CASSANDRA_IMAGE, run } from './base-images.ts';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const docker = (...args: string[]) => run('docker', args);

/** `docker compose` (v2 plugin) when present, else the standalone `docker-compose`. */
let composeCommand: Promise<string[]> | undefined;
function composeBinary(): Promise<string[]> {
  composeCommand ??= run('docker', ['compose', 'version']).then(
    () => ['docker', 'compose'],
    () => run('docker-compose', ['version']).then(() => ['docker-compose']),
  );
  return composeCommand;
}

/**
 * Compose's major version: 1 (the standalone Python `docker-compose`, as Debian ships it) or 2 (Go:
 * the `docker compose` plugin or a standalone v2; anything not 1.x counts as 2). Their outputs
 * differ: v1 says `Building <service>` and `exited with code N`; v2 prints BuildKit's progress and
 * `didn't complete successfully: exit N`.
 */
let composeMajor: Promise<number> | undefined;
export function composeVersion(): Promise<number> {
  composeMajor ??= composeBinary().then(async (binary) => {
    const short = (await run(binary[0] as string, [...binary.slice(1), 'version', '--short'])).trim();
    // v1 always says 1.x; v2 says 2.x, v2.x or, built from source without a version, `dev`.
    return /^v?1\./.test(short) ? 1 : 2;
  });
  return composeMajor;
}

/** Fails loudly, with what to do, when there is no Docker daemon or no Compose. */
export async function requireDocker(): Promise<string> {
  try {
    await docker('info', '--format', '{{.ServerVersion}}');
  } catch (error) {
    throw new Error(
      `Docker is not available (${(error as Error).message.split('\n')[0]}). ` +
        'Install docker.io and docker-compose and start dockerd (bash .ci/run does both).',
      { cause: error },
    );
  }
  try {
    const binary = (await composeBinary()).join(' ');
    return `${binary} (v${await composeVersion()})`;
  } catch (error) {
    throw new Error('Docker Compose is not available: install docker-compose (or the docker compose plugin)', {
      cause: error,
    });
  }
}

/** Builds the relay image from the repo on the local stand-in base image; returns seconds taken. */
export async function buildRelayImage(tag: string): Promise<number> {
  const started = Date.now();
  await docker('build', '-q', '--build-arg', `BASE_IMAGE=${BASE_NODE_IMAGE}`, '-t', tag, ROOT);
  return (Date.now() - started) / 1000;
}

export async function imageSizeBytes(tag: string): Promise<number> {
  return Number((await docker('image', 'inspect', '--format', '{{.Size}}', tag)).trim());
}

/** Every name this test gives a container, volume, network or compose project starts so. */
export const PREFIX = 'anodetest';
/** The relay images it builds are tagged `anode/relay:test-<pid>-<6 hex>[-…]`. */
export const TEST_IMAGE = 'anode/relay';
/** A name for this run's resources: the prefix, this process's id, and 6 hex digits. */
export const runName = () => `${PREFIX}${process.pid}${randomBytes(3).toString('hex')}`;
export const testImageTag = () => `${TEST_IMAGE}:test-${process.pid}-${randomBytes(3).toString('hex')}`;

/**
 * The id of the test process that made a resource, from its name (`anodetest<pid><6 hex>`, then
 * `_…` or `-…` for compose's and the image test's volumes and networks) or image tag
 * (`anode/relay:test-<pid>-<6 hex>`); undefined for a name not of this test's making.
 */
export function ownerPid(name: string): number | undefined {
  const match =
    /^anodetest(\d+)[0-9a-f]{6}(?:[-_]|$)/.exec(name) ?? /^anode\/relay:test-(\d+)-[0-9a-f]{6}(?:-|$)/.exec(name);
  return match ? Number(match[1]) : undefined;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Removes what earlier runs of this test left (a run killed before its `after` hooks): the
 * containers, volumes and networks of `anodetest*` projects and containers, and the
 * `anode/relay:test-*` images, except those of a test process still running (another run on the
 * same daemon). Returns what it removed.
 */
export async function removeStale(log: (line: string) => void = () => {}): Promise<string[]> {
  const list = async (...args: string[]) => (await docker(...args)).split('\n').filter(Boolean);
  const stale = (name: string) => {
    const pid = ownerPid(name);
    return pid !== undefined && pid !== process.pid && !alive(pid);
  };
  const removed: string[] = [];
  const remove = async (kind: string, names: string[], ...rm: string[]) => {
    const gone = names.filter(stale);
    if (gone.length === 0) return;
    await docker(...rm, ...gone).catch((error: Error) => log(`stale ${kind}s: ${error.message}`));
    removed.push(...gone.map((name) => `${kind} ${name}`));
  };
  // Containers first: they hold the volumes and networks.
  await remove(
    'container',
    await list('ps', '-a', '--filter', `name=${PREFIX}`, '--format', '{{.Names}}'),
    'rm',
    '-f',
    '-v',
  );
  await remove('volume', await list('volume', 'ls', '-q', '--filter', `name=${PREFIX}`), 'volume', 'rm', '-f');
  await remove(
    'network',
    await list('network', 'ls', '--filter', `name=${PREFIX}`, '--format', '{{.Name}}'),
    'network',
    'rm',
  );
  const images = await list('image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', TEST_IMAGE);
  await remove('image', images, 'image', 'rm', '-f');
  if (removed.length > 0) log(`removed what earlier runs left: ${removed.join(', ')}`);
  return removed;
}

/**
 * A compose file with one more relay, made as docs/deploy.md says: relay3's service block copied
 * as relay<n>, with its own named /data volume (listed under volumes:) and host port.
 */
export function withRelay(text: string, n: number): string {
  const lines = text.split('\n');
  const start = lines.indexOf('  relay3:');
  if (start < 0) throw new Error('no relay3 service');
  let end = start + 1;
  while (end < lines.length && /^( {4}|\s*$)/.test(lines[end] as string)) end++;
  while (end > start && (lines[end - 1] as string).trim() === '') end--;
  const block = lines.slice(start, end).map((line) =>
    line
      .replaceAll('relay3', `relay${n}`)
      .replaceAll('RELAY3_PORT', `RELAY${n}_PORT`)
      .replace(':-8083}', `:-${8080 + n}}`),
  );
  const volumes = lines.indexOf('  relay3-data:');
  if (volumes < 0) throw new Error('no relay3-data volume');
  const out = [...lines];
  out.splice(volumes + 1, 0, `  relay${n}-data:`);
  out.splice(end, 0, ...block);
  return out.join('\n');
}

export interface ComposeProject {
  name: string;
  /** Host URL of relay1..3 (index 0..2). */
  urls: string[];
  wsUrls: string[];
  /** Host URL of relay n (1-based; 4 is there for a relay added with withRelay). */
  url(n: number): string;
  compose(...args: string[]): Promise<string>;
  /** The same with more environment variables, resolving with standard error too. */
  composeWith(env: Record<string, string>, ...args: string[]): Promise<string>;
  /** `up -d` with these arguments; resolves with its standard error too, rejects with the logs. */
  up(...args: string[]): Promise<string>;
  /** From now on, run this compose file (an absolute path) instead. */
  useFile(file: string): void;
  /** Compose's major version (1 or 2). */
  composeVersion: number;
  /** The container id of one instance of a service, running or not. */
  container(service: string, index?: number): Promise<string>;
  /** Waits until the relays answer /healthz. */
  waitHealthy(urls?: string[], timeoutMs?: number): Promise<void>;
  /** `down -v`: containers, networks and volumes of this project. */
  destroy(): Promise<void>;
}

export async function composeProject(
  file: string,
  image: string,
  env: Record<string, string> = {},
): Promise<ComposeProject> {
  const binary = await composeBinary();
  const version = await composeVersion();
  const name = runName();
  const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
  // Only what this test sets: an ANODE_* variable from the caller's shell must not leak in.
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ANODE_')));
  const composeEnv = {
    ...base,
    ANODE_IMAGE: image,
    ANODE_BASE_IMAGE: BASE_NODE_IMAGE,
    ANODE_CASSANDRA_IMAGE: CASSANDRA_IMAGE,
    ...Object.fromEntries(ports.map((port, i) => [`ANODE_RELAY${i + 1}_PORT`, String(port)])),
    ...env,
  };
  let path = resolve(ROOT, file);
  // The repo is the project directory whatever file is used (the build context is `.`).
  const invoke = (extra: Record<string, string>, stderr: boolean, args: string[]) =>
    run(binary[0] as string, [...binary.slice(1), '-p', name, '--project-directory', ROOT, '-f', path, ...args], {
      env: { ...composeEnv, ...extra },
      stderr,
    });
  const compose = (...args: string[]) => invoke({}, false, args);
  // A failed `up` says why: the services' last log lines (a relay that crashed at start).
  const explained = async (error: Error): Promise<never> => {
    const logs = await compose('logs', '--no-color', '--tail', '30').catch((e: Error) => e.message);
    throw new Error(`${error.message}\n--- compose logs ---\n${logs.slice(-12_000)}`, { cause: error });
  };
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  const container = async (service: string, index = 1) => {
    // `-a`: v2's `ps` lists running containers only (v1's lists stopped ones too).
    const ids = (await compose('ps', '-a', '-q', service)).trim().split('\n').filter(Boolean);
    const id = ids[index - 1];
    if (!id) throw new Error(`no container ${index} of service ${service} (have ${ids.length})`);
    return id;
  };
  const waitHealthy = (which = urls.slice(0, 3), timeoutMs = 180_000) =>
    waitFor(
      `relays ${which.join(', ')} healthy`,
      async () => (await Promise.all(which.map((url) => fetch(`${url}/healthz`)))).every((res) => res.ok),
      timeoutMs,
      500,
    );
  return {
    name,
    urls: urls.slice(0, 3),
    wsUrls: urls.slice(0, 3).map((url) => url.replace(/^http/, 'ws')),
    url: (n) => urls[n - 1] as string,
    compose,
    composeVersion: version,
    composeWith: (extra, ...args) => invoke(extra, true, args),
    up: (...args) => invoke({}, true, ['up', '-d', ...args]).catch(explained),
    useFile: (next) => (path = next),
    container,
    waitHealthy,
    destroy: async () => {
      await compose('down', '-v', '--remove-orphans', '--timeout', '5');
    },
  };
}
