import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { startRelay, type TestRelay } from '../helpers/relay.ts';

/**
 * `anode token`, as a new user runs it against a relay with auth on: a token it prints must be one
 * the relay takes. `--subject` is the source a relay stamps on the token's publishes, so a subject
 * that is no source name ("my app") made a token whose every publish the relay refused (403).
 */
const CLI = fileURLToPath(new URL('../../relay-node/bin/anode.ts', import.meta.url));
const SECRET = 'first-hour-'.padEnd(40, 'x');

function anodeToken(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'token', ...args], {
    env: { ...process.env, ANODE_JWT_SECRET: SECRET, ANODE_JWT_SECRET_FILE: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`anode token ${args.join(' ')} still running after 60 s`));
    }, 60_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function publish(relay: TestRelay, token: string, body: Record<string, unknown>): Promise<number> {
  const response = await fetch(`${relay.url}/v1/topics/demo.hello/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  await response.body?.cancel();
  return response.status;
}

describe('first hour: anode token --subject', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'jwt-secret': SECRET });
  });
  after(() => relay?.stop());

  it('a subject the relay takes as a source gives a token that publishes', async () => {
    const run = await anodeToken(['--subject', 'my-app', '--pub', 'demo.>']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await publish(relay, run.stdout.trim(), { data: 1 }), 202);
  });

  it('refuses a subject that is no source name, which the relay would refuse on every publish', async () => {
    const run = await anodeToken(['--subject', 'my app', '--pub', 'demo.>', '--sub', 'demo.>']);
    assert.equal(run.code, 2, `exit code 2 (bad input), not a token the relay refuses: ${run.stdout}`);
    assert.equal(run.stdout, '');
    assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
    assert.match(run.stderr, /--subject "my app" is not a source name.*my-app/);
  });

  it('with --src it mints the token and warns that each publish must name a granted source', async () => {
    const run = await anodeToken(['--subject', 'my app', '--pub', 'demo.>', '--src', 'demo-bot']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /warning: --subject "my app" is not a source name.*--src/);
    const token = run.stdout.trim();
    assert.equal(await publish(relay, token, { data: 1, source: 'demo-bot' }), 202);
    assert.equal(await publish(relay, token, { data: 1 }), 403, 'as the warning says');
  });
});
