import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '@anode/relay-node/src/config.ts';
import { createLogger } from '@anode/relay-node/src/logger.ts';
import { createRelayNode } from '@anode/relay-node/src/node.ts';
import type { Envelope, MessageStore } from '@anode/shared';

/** A real relay node in this process, on a free port and a fresh data folder. */
export interface TestRelay {
  url: string;
  wsUrl: string;
  dataDir: string;
  stop(): Promise<void>;
}

const madeDirs = new Set<string>();

/**
 * A fresh folder under the system's temp folder, removed when this process exits at the latest
 * (a test file runs in its own process), so tests that stop early or keep a folder across a
 * restart leave nothing behind.
 */
export async function tempDir(prefix = 'anode-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  if (madeDirs.size === 0) process.once('exit', removeMadeDirs);
  madeDirs.add(dir);
  return dir;
}

function removeMadeDirs(): void {
  for (const dir of madeDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Exiting anyway: a folder still in use (a relay process not yet gone) stays.
    }
  }
}

export async function startRelay(
  flags: Record<string, string> = {},
  options: { dataDir?: string; wrapStore?: (store: MessageStore) => MessageStore; keepData?: boolean } = {},
): Promise<TestRelay> {
  const dataDir = options.dataDir ?? (await tempDir());
  const config = loadConfig({
    flags: { port: '0', 'data-dir': dataDir, 'log-level': process.env.ANODE_TEST_LOG ?? 'silent', ...flags },
    env: {},
  });
  const node = await createRelayNode(config, createLogger(config.log_level, process.stderr), {
    wrapStore: options.wrapStore,
  });
  let url: string;
  try {
    ({ url } = await node.start());
  } catch (error) {
    // What did start is stopped (the store's connections, the data-folder lock), as the CLI does.
    await node.stop().catch(() => {});
    if (!options.keepData && !options.dataDir) await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    dataDir,
    async stop() {
      await node.stop();
      // Retried: ENOTEMPTY when something still wrote into the folder while it was being removed.
      if (!options.keepData && !options.dataDir) {
        await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
      }
    },
  };
}

const CLI = fileURLToPath(new URL('../../relay-node/bin/anode.ts', import.meta.url));

/** A relay as a separate OS process (for crash and signal tests); resolves once it is ready. */
export interface RelayProcess {
  url: string;
  wsUrl: string;
  child: ChildProcess;
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function spawnRelay(args: string[], env: Record<string, string> = {}): Promise<RelayProcess> {
  const child = spawn(process.execPath, [CLI, 'relay', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = await new Promise<string>((resolve, reject) => {
    // Generous: loading the relay's modules alone took ~23 s on a 2-core machine at load 48.
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${output.join('')}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output.push(chunk.toString());
      const match = /relay ready at (http:\/\/[^"\s]+)/.exec(output.join(''));
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`relay exited (${code}) before ready:\n${output.join('')}`));
    });
  });
  return { url, wsUrl: url.replace(/^http/, 'ws'), child, output, exited };
}

/** Every stored message of a topic on a node, following `next`. */
export async function history(url: string, topic: string): Promise<Envelope[]> {
  const out: Envelope[] = [];
  let after: string | null = null;
  do {
    const query: string = after ? `?limit=1000&after=${after}` : '?limit=1000';
    const res = await fetch(`${url}/v1/topics/${topic}/messages${query}`);
    const body = (await res.json()) as { messages: Envelope[]; next: string | null };
    out.push(...body.messages);
    after = body.next;
  } while (after);
  return out;
}
