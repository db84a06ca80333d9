import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LabPlan } from './lab.ts';

const CLI = fileURLToPath(new URL('../../relay-node/bin/anode.ts', import.meta.url));
export const HTTP_PORT = 8080;
const MESH_PORT = 4001;
/** Generous: a restarted relay first catches up, on a machine other work shares. */
const START_TIMEOUT_MS = 120_000;

/**
 * The five relays of a chaos run, each a real `anode relay` process in its own network
 * namespace, on fixed addresses and ports so that a restarted relay is the same node (same data
 * folder and peer id). Output goes to a log file per relay in the run folder.
 */
export interface ChaosRelay {
  readonly index: number;
  readonly url: string;
  readonly wsUrl: string;
  readonly pid: number | undefined;
  /** Running and not SIGSTOPped. */
  readonly up: boolean;
  start(): Promise<void>;
  kill(): Promise<void>;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  sample(): { rssBytes: number; fds: number } | undefined;
}

export interface RelayFleetOptions {
  plan: LabPlan;
  runDir: string;
  flags: (index: number) => string[];
}

export function createRelays({ plan, runDir, flags }: RelayFleetOptions): ChaosRelay[] {
  const mesh = plan.relays.map((r) => `/ip4/${r.address}/tcp/${MESH_PORT}`);
  return plan.relays.map(({ ns, address }, index) => {
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    let paused = false;
    const url = `http://${address}:${HTTP_PORT}`;
    const args = [
      CLI,
      'relay',
      '--host',
      address,
      '--port',
      String(HTTP_PORT),
      '--data-dir',
      join(runDir, `relay-${index}`),
      '--listen',
      mesh[index] ?? '',
      ...mesh.filter((_, i) => i !== index).flatMap((addr) => ['--bootstrap', addr]),
      ...flags(index),
    ];
    const relay: ChaosRelay = {
      index,
      url,
      wsUrl: url.replace(/^http/, 'ws'),
      get pid() {
        return child?.pid;
      },
      get up() {
        return child !== undefined && child.exitCode === null && child.signalCode === null && !paused;
      },
      async start() {
        const log = openSync(join(runDir, `relay-${index}.log`), 'a');
        child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { stdio: ['ignore', log, log] });
        const current = child;
        exited = new Promise((resolve) => current.once('exit', () => resolve()));
        paused = false;
        const deadline = Date.now() + START_TIMEOUT_MS;
        let last: string;
        for (;;) {
          if (current.exitCode !== null) throw new Error(`relay ${index} exited (${current.exitCode}) while starting`);
          try {
            const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) });
            if (res.ok) return;
            last = `healthz ${res.status} ${await res.text()}`;
          } catch (error) {
            last = (error as Error).message;
          }
          if (Date.now() > deadline) {
            throw new Error(`relay ${index} not healthy within ${START_TIMEOUT_MS} ms (${last}; see ${runDir})`);
          }
          await new Promise((r) => setTimeout(r, 250));
        }
      },
      async kill() {
        if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        paused = false;
        await exited;
      },
      pause() {
        paused = true;
        child?.kill('SIGSTOP');
      },
      resume() {
        paused = false;
        child?.kill('SIGCONT');
      },
      async stop() {
        if (child?.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        const force = setTimeout(() => child?.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(force);
      },
      sample() {
        const pid = child?.pid;
        if (!pid || !relay.up) return undefined;
        try {
          const status = readFileSync(`/proc/${pid}/status`, 'utf8');
          const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
          return { rssBytes: rssKb * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
        } catch {
          return undefined;
        }
      },
    };
    return relay;
  });
}
