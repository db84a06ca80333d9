import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { createTokenVerifier } from '@anode/shared';
import { CONFIG_KEYS } from './config.ts';
import { EXIT_CODES } from './exit-codes.ts';

/**
 * The `anode` command as a user runs it: a real process each time. What a command loads is
 * recorded by a module resolve hook (no timings here: the machine is shared), so "help and token
 * load no libp2p" is checked as such.
 */
const CLI = fileURLToPath(new URL('../bin/anode.ts', import.meta.url));
const SECRET = 's'.repeat(32);
/** Prints every package the process resolved, as one `loaded:` line on stderr at exit. */
const RECORD_LOADS = `data:text/javascript,${encodeURIComponent(`
import { registerHooks } from 'node:module';
const seen = new Set();
registerHooks({ resolve(specifier, context, next) {
  if (!specifier.startsWith('.') && !specifier.startsWith('node:') && !specifier.startsWith('file:')) seen.add(specifier);
  return next(specifier, context);
} });
process.on('exit', () => process.stderr.write('loaded: ' + [...seen].join(' ') + '\\n'));
`)}`;
/** Packages only the relay itself needs: loading one for help or a token is the old 4-7 s start. */
const HEAVY = /(^|\s)(libp2p|@libp2p\/|cassandra-driver|hono|@hono\/|pino|prom-client)/;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  loaded: string;
}

function anode(
  args: string[],
  options: { env?: Record<string, string>; until?: RegExp; timeoutMs?: number } = {},
): Promise<Run> {
  const child = spawn(process.execPath, ['--import', RECORD_LOADS, CLI, ...args], {
    env: { ...process.env, ANODE_JWT_SECRET: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (options.until?.test(stdout)) child.kill('SIGTERM');
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timeoutMs = options.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`anode ${args.join(' ')} still running after ${timeoutMs / 1000} s:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      const loaded = /^loaded: (.*)$/m.exec(stderr)?.[1] ?? '';
      resolve({ code, stdout, stderr: stderr.replace(/^loaded: .*\n/m, ''), loaded });
    });
  });
}

/** One line on stderr, no stack frames, exit code 2, nothing on stdout. */
function assertUsageError(run: Run, pattern: RegExp) {
  assert.equal(run.code, EXIT_CODES.usage, run.stderr);
  assert.equal(run.stdout, '');
  assert.equal(run.stderr.trimEnd().split('\n').length, 1, `one line: ${run.stderr}`);
  assert.doesNotMatch(run.stderr, /\n\s+at /);
  assert.match(run.stderr, pattern);
}

describe('anode command', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const dataDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-cli-'));
    dirs.push(dir);
    return dir;
  };

  it('--help lists every relay option in aligned columns and loads none of the relay', async () => {
    const run = await anode(['--help']);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.loaded, HEAVY);
    const rows = run.stdout.split('\n').filter((line) => /^ {2}--[a-z]/.test(line));
    assert.equal(rows.length, CONFIG_KEYS.length);
    const header = run.stdout.split('\n').find((line) => /^ {2}flag\s+environment\s+default\s+meaning$/.test(line));
    assert.ok(header, 'a header row');
    // Every row's environment column starts where the header's does, and so does its meaning.
    const envAt = header.indexOf('environment');
    const meaningAt = header.indexOf('meaning');
    for (const row of rows) {
      assert.equal(row.indexOf(' ANODE_') + 1, envAt, row);
      assert.match(row.slice(meaningAt - 2), /^ {2}\S/, row);
    }
    assert.doesNotMatch(run.stdout, /src\/sources\/README\.md/);
  });

  it('with no command prints the help on stderr and exits 2 (help and --help exit 0)', async () => {
    const run = await anode([]);
    assert.equal(run.code, EXIT_CODES.usage, run.stderr);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^Usage:$/m);
    const help = await anode(['help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage:$/m);
  });

  it('says an unknown command is unknown, without the whole help', async () => {
    assertUsageError(await anode(['relya']), /^anode: unknown command "relya" \(the commands are relay and token/);
    assertUsageError(await anode(['--port', '1']), /unknown option --port/);
  });

  it('token prints a token the relay accepts, with the grants asked for, loading no relay module', async () => {
    const run = await anode(['token', '--subject', 'app', '--pub', 'a.>', '--sub', 'a.*', '--expires', '2h'], {
      env: { ANODE_JWT_SECRET: SECRET },
    });
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.loaded, HEAVY);
    const verify = await createTokenVerifier({ hs256Secret: SECRET });
    const claims = await verify(run.stdout.trim());
    assert.deepEqual([claims.subject, claims.pub, claims.sub], ['app', ['a.>'], ['a.*']]);
    const lifetime = (claims.exp ?? 0) - Date.now() / 1000;
    assert.ok(lifetime > 7000 && lifetime <= 7200, `expires in about 2 h: ${lifetime}`);
  });

  it('token reads the secret from the file ANODE_JWT_SECRET_FILE names, as the relay does', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-token-secret-'));
    try {
      const file = join(dir, 'jwt');
      await writeFile(file, `${SECRET}\n`, { mode: 0o600 });
      const run = await anode(['token', '--pub', 'a.>'], { env: { ANODE_JWT_SECRET_FILE: file } });
      assert.equal(run.code, 0, run.stderr);
      const claims = await (await createTokenVerifier({ hs256Secret: SECRET }))(run.stdout.trim());
      assert.deepEqual(claims.pub, ['a.>']);
      // A secret set in the _FILE variable by mistake is not printed.
      const misplaced = await anode(['token', '--pub', 'a.>'], { env: { ANODE_JWT_SECRET_FILE: SECRET } });
      assertUsageError(misplaced, /cannot read the file ANODE_JWT_SECRET_FILE names \(ENOENT\)/);
      assert.ok(!misplaced.stderr.includes(SECRET));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('token --audience mints a token a relay with that jwt_audience accepts', async () => {
    const run = await anode(['token', '--pub', 'a.>', '--audience', 'anode'], { env: { ANODE_JWT_SECRET: SECRET } });
    assert.equal(run.code, 0, run.stderr);
    const token = run.stdout.trim();
    assert.equal(
      (await (await createTokenVerifier({ hs256Secret: SECRET, audience: ['anode'] }))(token)).pub[0],
      'a.>',
    );
    const other = await createTokenVerifier({ hs256Secret: SECRET, audience: ['other'] });
    await assert.rejects(other(token), /audience/);
  });

  it('token refuses what the relay would refuse, in one line with a hint', async () => {
    assertUsageError(await anode(['token', '--secret', 'short', '--pub', 'a']), /5 characters.*under 32.*openssl rand/);
    assertUsageError(await anode(['token', '--pub', 'a']), /no secret.*ANODE_JWT_SECRET/);
    assertUsageError(
      await anode(['token', '--secret', SECRET, '--expires', 'banana']),
      /--expires "banana" is not a lifetime.*1h/,
    );
    assertUsageError(await anode(['token', '--secret', SECRET, '--expires', '3600']), /not a lifetime/);
    assertUsageError(
      await anode(['token', '--secret', SECRET, '--pub', 'a..b']),
      /--pub "a\.\.b": not a topic pattern/,
    );
    assertUsageError(await anode(['token', '--secret', SECRET, '--src', 'x y']), /--src "x y": not a source pattern/);
    assertUsageError(await anode(['token', '--secret', SECRET, '--bogus']), /^anode: token: unknown option '--bogus'/);
  });

  it('relay refuses a bad option in one line before loading the relay', async () => {
    const run = await anode(['relay', '--port', 'banana']);
    assertUsageError(run, /invalid config: port: .*--port/);
    assert.doesNotMatch(run.loaded, HEAVY);
    assertUsageError(await anode(['relay', '--no-such-option', '1']), /unknown option '--no-such-option'/);
  });

  it('relay prints its ready line at any log level', async () => {
    for (const level of ['warn', 'silent']) {
      const run = await anode(['relay', '--port', '0', '--data-dir', await dataDir(), '--log-level', level], {
        until: /relay ready at http:\/\/127\.0\.0\.1:\d+/,
      });
      assert.match(run.stdout, /relay ready at http:\/\/127\.0\.0\.1:\d+/, `at ${level}: ${run.stderr}`);
      assert.equal(run.code, EXIT_CODES.ok);
    }
  });

  it(
    'relay with a data folder that cannot be made (under /proc) says so and exits, without spinning',
    {
      skip: process.platform !== 'linux' && 'needs /proc',
    },
    async () => {
      // Node's own recursive mkdir never returns there: /proc answers ENOENT for the new folder,
      // so it made the parent (EEXIST) and tried again, at full CPU, deaf even to SIGTERM.
      const run = await anode(['relay', '--port', '0', '--data-dir', '/proc/anode-nope/data'], { timeoutMs: 30_000 });
      assert.equal(run.code, EXIT_CODES.start_failed, run.stderr);
      assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
      assert.match(
        run.stderr,
        /could not start: cannot create the data folder \/proc\/anode-nope\/data: \/proc does not take new folders .*set data_dir/,
      );
    },
  );

  for (const [which, args] of [
    ['HTTP', (port: number) => ['--port', String(port)]],
    ['mesh', (port: number) => ['--port', '0', '--listen', `/ip4/127.0.0.1/tcp/${port}`]],
  ] as const) {
    it(`relay on a busy ${which} port says which port and what to do, without a stack`, async () => {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as { port: number };
      try {
        const run = await anode(['relay', ...args(port), '--data-dir', await dataDir()]);
        // A busy port is a failed start (EXIT_CODES documents 3 for it), not a usage error.
        assert.equal(run.code, EXIT_CODES.start_failed, run.stderr);
        assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
        assert.match(run.stderr, new RegExp(`could not start: port ${port} on 127\\.0\\.0\\.1 is in use .*--port`));
        assert.doesNotMatch(run.stdout + run.stderr, /\n\s+at |\\n\s+at /, 'no stack in the output or the log');
        // Nothing about a relay that never served (it said AUTH IS OFF before finding its port taken).
        if (which === 'HTTP') assert.doesNotMatch(run.stdout, /AUTH IS OFF/);
      } finally {
        server.close();
      }
    });
  }
});
