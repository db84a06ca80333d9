// Docker and Compose for the deploy tests: the relay image build, one compose project per run
// (unique name, host ports chosen free at run time on 127.0.0.1), and its teardown.
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
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
    return (await composeBinary()).join(' ');
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

export interface ComposeProject {
  name: string;
  /** Host URL of relay1..3 (index 0..2). */
  urls: string[];
  wsUrls: string[];
  compose(...args: string[]): Promise<string>;
  /** The container id of one instance of a service. */
  container(service: string, index?: number): Promise<string>;
  /** The host URL a scaled service instance is published on. */
  publishedUrl(service: string, index: number): Promise<string>;
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
  const name = `anodetest${process.pid}${randomBytes(3).toString('hex')}`;
  const ports = [await freePort(), await freePort(), await freePort()];
  // Only what this test sets: an ANODE_* variable from the caller's shell must not leak in.
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ANODE_')));
  const composeEnv = {
    ...base,
    ANODE_IMAGE: image,
    ANODE_BASE_IMAGE: BASE_NODE_IMAGE,
    ANODE_CASSANDRA_IMAGE: CASSANDRA_IMAGE,
    ANODE_RELAY1_PORT: String(ports[0]),
    ANODE_RELAY2_PORT: String(ports[1]),
    ANODE_RELAY3_PORT: String(ports[2]),
    ...env,
  };
  const compose = (...args: string[]) =>
    run(binary[0] as string, [...binary.slice(1), '-p', name, '-f', join(ROOT, file), ...args], {
      env: composeEnv,
    });
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  const container = async (service: string, index = 1) => {
    const ids = (await compose('ps', '-q', service)).trim().split('\n').filter(Boolean);
    const id = ids[index - 1];
    if (!id) throw new Error(`no container ${index} of service ${service} (have ${ids.length})`);
    return id;
  };
  const waitHealthy = (which = urls, timeoutMs = 180_000) =>
    waitFor(
      `relays ${which.join(', ')} healthy`,
      async () => (await Promise.all(which.map((url) => fetch(`${url}/healthz`)))).every((res) => res.ok),
      timeoutMs,
      500,
    );
  return {
    name,
    urls,
    wsUrls: urls.map((url) => url.replace(/^http/, 'ws')),
    compose,
    container,
    publishedUrl: async (service, index) => {
      const out = (await compose('port', `--index=${index}`, service, '8080')).trim();
      return `http://${out}`;
    },
    waitHealthy,
    destroy: async () => {
      await compose('--profile', 'scale', 'down', '-v', '--remove-orphans', '--timeout', '5');
    },
  };
}
