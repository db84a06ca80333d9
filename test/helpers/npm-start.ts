// Running the project's own commands from tests as a reader's shell would: `sh -c` in the
// project folder with its Node 24 first on PATH, and `npm start` (or worker/scripts/start.ts)
// in a process group of its own, stopped whole.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { delimiter, join } from 'node:path';
import { ROOT } from '../docs/check-links.ts';

/** `npm run` puts the project's Node 24 first on PATH; a reader's shell after `npm ci` may not. */
export const PROJECT_PATH = `${join(ROOT, 'node_modules/.bin')}${delimiter}${process.env.PATH}`;

/** Run `command` with `sh -c` in the project folder; its exit code and output. */
export function sh(command: string, env: Record<string, string> = {}, timeoutMs = 60_000) {
  const child = spawn('sh', ['-c', command], { cwd: ROOT, env: { ...process.env, PATH: PROJECT_PATH, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`"${command}" did not end within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Start `argv` (e.g. `sh -c 'npm start'`) in the project folder, in a process group of its own,
 * and wait for its banner's last line ("Ctrl-C stops everything"); fails with its output if it
 * exits or does not get there within `withinMs`. `stop()` sends the group SIGINT, as Ctrl-C does,
 * then SIGKILL after 15 s.
 */
export async function startUntilBanner(argv: string[], env: NodeJS.ProcessEnv, withinMs: number) {
  const [command, ...args] = argv as [string, ...string[]];
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, PATH: PROJECT_PATH, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const group = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    group('SIGINT');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    group('SIGKILL');
  };
  const deadline = Date.now() + withinMs;
  while (!/Ctrl-C stops everything/.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      await stop();
      assert.fail(`${argv.join(' ')} did not come up:\n${output.slice(-4000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { output: () => output, stop };
}
