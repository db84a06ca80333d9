import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../docs/check-links.ts';
import { freePort } from '../helpers/mesh.ts';
import { sh as shell, startUntilBanner } from '../helpers/npm-start.ts';

/**
 * `npm start` (worker/scripts/start.ts) with ANODE_JWT_SECRET in the shell: the relay and the
 * edge both enforce auth (an anonymous publish through the edge was stored by the relay), and
 * the banner says how to mint a token, with which every command it suggests works.
 */
// A `$`, a single and a double quote in it: the edge's env file must carry them as they are.
const SECRET = `start-auth-test-secret-0123456789-$HOME-'x"`;

/** A shell command run with the secret in its environment, as the reader's shell has it. */
const sh = (script: string) => shell(script, { ANODE_JWT_SECRET: SECRET });

describe('npm start with ANODE_JWT_SECRET set', () => {
  let start: Awaited<ReturnType<typeof startUntilBanner>> | undefined;
  let output = '';
  let relayPort = 0;
  let edgePort = 0;
  let dataDir = '';

  before(async () => {
    relayPort = await freePort();
    edgePort = await freePort();
    dataDir = await mkdtemp(join(tmpdir(), 'anode-start-auth-'));
    const env = {
      ANODE_JWT_SECRET: SECRET,
      ANODE_PORT: String(relayPort),
      ANODE_EDGE_PORT: String(edgePort),
      ANODE_DATA_DIR: dataDir,
      ANODE_DEMO: '0',
    };
    start = await startUntilBanner([process.execPath, join(ROOT, 'worker/scripts/start.ts')], env, 120_000);
    output = start.output();
  });

  after(async () => {
    await start?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses an anonymous publish at the edge and at the relay with 401', async () => {
    for (const port of [edgePort, relayPort]) {
      const res = await fetch(`http://127.0.0.1:${port}/v1/topics/demo.hello/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: 'anonymous' }),
      });
      assert.equal(res.status, 401, `port ${port}`);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'unauthorized');
    }
  });

  it('says auth is on, how to mint a token, and every command of its banner works with that token', async () => {
    const banner = output.slice(output.lastIndexOf('aNode is up'));
    assert.match(banner, /Auth is on/);
    const mint = /^ {2}(export ANODE_TOKEN=.*npx anode token .*)$/m.exec(banner)?.[1];
    assert.ok(mint, banner);
    const tries = banner
      .slice(banner.indexOf('Try:\n') + 5, banner.indexOf('Ctrl-C stops'))
      .split('\n')
      .map((line) => line.replace(/\s+#.*$/, '').trim())
      .filter(Boolean);
    assert.ok(tries.length >= 4, banner);
    let edgeRead = '';
    for (const command of tries) {
      const result = await sh(`${mint}\n${command}`);
      assert.equal(result.code, 0, `${command}\n${result.stderr}`);
      assert.doesNotMatch(result.stdout, /"error"/, `${command}\n${result.stdout}`);
      if (!command.includes('-XPOST') && command.includes(`:${edgePort}/v1/topics/demo.hello/messages`)) {
        edgeRead = result.stdout;
      }
    }
    assert.match(edgeRead, /hi from the edge/, 'the edge has what it acknowledged');
  });
});

describe('npm start with a secret the edge cannot be given', () => {
  it('says which setting and why in one line, exits 1, and leaves no env file behind', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'anode-start-refused-'));
    try {
      const env = {
        ANODE_JWT_SECRET: `all-three-quotes-'-\`-"-0123456789abcdef`,
        ANODE_PORT: String(await freePort()),
        ANODE_EDGE_PORT: String(await freePort()),
        ANODE_DATA_DIR: join(tmp, 'data'),
        ANODE_DEMO: '0',
        TMPDIR: tmp,
      };
      const run = await shell(`exec node ${JSON.stringify(join(ROOT, 'worker/scripts/start.ts'))}`, env);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
      assert.match(run.stderr, /^npm start: jwt_secret \(ANODE_JWT_SECRET.*all three quote characters/);
      assert.doesNotMatch(run.stderr + run.stdout, /\n\s+at /, 'no stack');
      assert.deepEqual(await readdir(tmp), [], 'the edge env folder is removed and nothing started');
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
