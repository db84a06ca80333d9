import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../docs/check-links.ts';
import { freePort } from '../helpers/mesh.ts';
import { sh, startUntilBanner } from '../helpers/npm-start.ts';

/**
 * The README as a newcomer follows it, with the commands taken from the README itself (so the
 * two cannot drift): `npm start`, the curl calls, the first app, then every command `npm start`'s
 * banner suggests. Only the ports differ (free ones, through ANODE_PORT / ANODE_EDGE_PORT, which
 * `npm start` honours) and the data folder (a temporary one). `npm ci`, the Quickstart's first
 * command, is what CI ran before the tests.
 */
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The code blocks of a README section, in order. */
function blocks(section: string, lang: string): string[] {
  const start = README.indexOf(`\n## ${section}\n`);
  assert.ok(start >= 0, `README has a "${section}" section`);
  const end = README.indexOf('\n## ', start + 1);
  const text = README.slice(start, end < 0 ? undefined : end);
  return [...text.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g'))].map((m) => m[1]!);
}

/** Shell lines of a block: continuations joined, comments dropped. */
function commands(block: string): string[] {
  return block
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter(Boolean);
}

describe('README smoke test', () => {
  let start: Awaited<ReturnType<typeof startUntilBanner>> | undefined;
  let output = '';
  let relayPort = 0;
  let edgePort = 0;
  let dataDir = '';

  before(async () => {
    const [quickstart] = blocks('Quickstart', 'sh');
    const [first] = commands(quickstart ?? '');
    assert.equal(first, 'npm ci && npm start', 'the Quickstart starts with npm ci && npm start');
    relayPort = await freePort();
    edgePort = await freePort();
    dataDir = await mkdtemp(join(tmpdir(), 'anode-readme-'));
    // A source an admin API created in an earlier run: it comes back, and the banner must say so.
    const earlier = {
      name: 'old-feed',
      kind: 'http',
      url: 'http://127.0.0.1:9/x',
      interval_ms: 60_000,
      topic: 'old.x',
    };
    await writeFile(join(dataDir, 'sources.json'), JSON.stringify({ version: 1, changes: { 'old-feed': earlier } }), {
      mode: 0o600,
    });
    const env = {
      ANODE_PORT: String(relayPort),
      ANODE_EDGE_PORT: String(edgePort),
      ANODE_DATA_DIR: dataDir,
    };
    start = await startUntilBanner(['sh', '-c', 'npm start'], env, 240_000);
    output = start.output();
  });

  after(async () => {
    await start?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('the Quickstart curl calls publish and read back', async () => {
    const [, curls] = blocks('Quickstart', 'sh');
    const [post, get] = commands(curls ?? '').map((line) =>
      line.replaceAll('localhost:8080', `127.0.0.1:${relayPort}`),
    );
    assert.match(post ?? '', /^curl -sS? -XPOST/);
    const posted = await sh(post!);
    assert.equal(posted.code, 0, posted.stderr);
    const [{ cursor }] = (JSON.parse(posted.stdout) as { messages: [{ cursor: string }] }).messages;
    const got = await sh(get!);
    assert.ok((JSON.parse(got.stdout) as { messages: { cursor: string }[] }).messages.some((m) => m.cursor === cursor));
  });

  it('the first app in the README is examples/first-app.mjs, and runs against npm start: relay and edge', async () => {
    const [shown] = blocks('Your first app', 'js');
    const file = readFileSync(join(ROOT, 'examples/first-app.mjs'), 'utf8');
    assert.equal(
      shown,
      file.replace(/^(\/\/.*\n)+/, ''),
      'the README shows the file as it is (less its header comment)',
    );
    const [running] = blocks('Your first app', 'sh');
    const [relayLine, edgeLine] = commands(running ?? '');
    assert.equal(relayLine, 'npx node examples/first-app.mjs');
    const result = await sh(`${relayLine} http://127.0.0.1:${relayPort}`);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^received demo\.hello \{"text":"hello, aNode"\}/m);
    // The same app against the edge's base URL: the client finds the edge's /v1/ws too.
    assert.equal(edgeLine, 'npx node examples/first-app.mjs http://127.0.0.1:8787');
    const atEdge = await sh(edgeLine!.replace(':8787', `:${edgePort}`));
    assert.equal(atEdge.code, 0, atEdge.stderr);
    assert.match(atEdge.stdout, /^received demo\.hello \{"text":"hello, aNode"\}/m);
  });

  it('every command of the npm start banner works, and the demo sources are live', async () => {
    const banner = output.slice(output.lastIndexOf('aNode is up'));
    assert.match(banner, /created in an earlier run are back .*: old-feed\./, 'admin-created sources are named');
    const tries = commands(banner.slice(banner.indexOf('Try:\n') + 5, banner.indexOf('Ctrl-C stops')));
    assert.ok(tries.length >= 4, banner);
    const outputs: string[] = [];
    for (const command of tries) {
      const result = await sh(command);
      assert.equal(result.code, 0, `${command}\n${result.stderr}`);
      outputs.push(result.stdout);
    }
    const latest = outputs[tries.findIndex((c) => c.includes('prices.btc/latest'))] ?? '';
    assert.match(latest, /"source":"coin-prices"/, 'a demo source publishes at once');
    const edgeRead =
      outputs[
        tries.findIndex((c) => !c.includes('-XPOST') && c.includes(`:${edgePort}/v1/topics/demo.hello/messages`))
      ];
    assert.match(edgeRead ?? '', /hi from the edge/, 'the edge has what it acknowledged');
    // The edge forwards after its ack (the banner says so): the relay has it soon, not at once.
    const deadline = Date.now() + 30_000;
    let relayRead = '';
    while (!/hi from the edge/.test(relayRead) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      relayRead = (await sh(`curl -s 'http://127.0.0.1:${relayPort}/v1/topics/demo.hello/messages'`)).stdout;
    }
    assert.match(relayRead, /hi from the edge/, 'the edge publish reached the relay');
  });
});
