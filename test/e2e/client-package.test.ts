import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type * as Client from '@anode/client';
import { chromium } from 'playwright-core';
import { startRelay, type TestRelay } from '../helpers/relay.ts';

/**
 * `@anode/client` as a user gets it: `npm pack`, installed from the tarball alone into a plain
 * project (offline: it must need nothing else), run by the machine's Node 20 and by Chromium
 * against a real relay. The app run is the README's first app, examples/first-app.mjs.
 */
const CLIENT_DIR = fileURLToPath(new URL('../../client/', import.meta.url));
const FIRST_APP = fileURLToPath(new URL('../../examples/first-app.mjs', import.meta.url));
const NODE20 = process.env.NODE20_PATH ?? '/usr/bin/node';
const TSC = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A command that must end by itself within `timeoutMs` (a client that keeps a script alive fails here). */
function run(command: string, args: string[], cwd: string, timeoutMs = 60_000): Promise<Run> {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Build the package once if a previous `npm run build` has not. */
function ensureBuilt() {
  if (existsSync(join(CLIENT_DIR, 'dist/index.js'))) return;
  const result = spawnSync(process.execPath, ['scripts/build.ts'], { cwd: CLIENT_DIR, stdio: 'inherit' });
  assert.equal(result.status, 0, 'client build failed');
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('@anode/client package', () => {
  let project: string;
  let relay: TestRelay;

  before(async () => {
    ensureBuilt();
    project = await mkdtemp(join(tmpdir(), 'anode-client-pkg-'));
    const packed = await run('npm', ['pack', '--json', '--pack-destination', project], CLIENT_DIR);
    assert.equal(packed.code, 0, packed.stderr);
    const [{ filename }] = JSON.parse(packed.stdout) as [{ filename: string }];
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'my-app', private: true, type: 'module' }));
    // --offline: the tarball is all there is; a dependency it needed would fail the install.
    const installed = await run(
      'npm',
      ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', join(project, filename)],
      project,
      120_000,
    );
    assert.equal(installed.code, 0, installed.stderr);
    relay = await startRelay();
  });

  after(async () => {
    await relay?.stop();
    if (project) await rm(project, { recursive: true, force: true });
  });

  it('installs from the tarball alone: built JS and types, no dependencies, no TypeScript sources', async () => {
    assert.deepEqual(await readdir(join(project, 'node_modules')).then((n) => n.filter((x) => !x.startsWith('.'))), [
      '@anode',
    ]);
    const pkg = JSON.parse(await readFile(join(project, 'node_modules/@anode/client/package.json'), 'utf8')) as {
      dependencies?: object;
      exports: { '.': { types: string; default: string } };
    };
    assert.equal(pkg.dependencies, undefined);
    const types = await readFile(join(project, 'node_modules/@anode/client', pkg.exports['.'].types), 'utf8');
    assert.match(types, /createClient/);
    const files = await run(
      'find',
      ['node_modules/@anode/client', '-name', '*.ts', '-not', '-name', '*.d.ts'],
      project,
    );
    assert.equal(files.stdout, '', 'no .ts sources in the package');
  });

  it('types a plain TypeScript project that uses it (strict, no skipLibCheck)', async () => {
    const app = `import { createClient, type Envelope } from '@anode/client';
const client = createClient({ url: 'http://127.0.0.1:8080' });
const sub = client.subscribe('a.b', (message: Envelope) => message.topic.toUpperCase());
const cursor: string | undefined = sub.cursor;
// @ts-expect-error publish options are typed: no such option
void client.publish('a.b', 1, { nope: true });
void cursor;
await client.close();
`;
    await writeFile(join(project, 'app.ts'), app);
    const tsconfig = {
      compilerOptions: { module: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], strict: true, noEmit: true },
      files: ['app.ts'],
    };
    await writeFile(join(project, 'tsconfig.json'), JSON.stringify(tsconfig));
    const result = await run(process.execPath, [TSC, '-p', project], project);
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  it('runs the first app on Node 20 against a real relay, and the script exits by itself', async () => {
    await copyFile(FIRST_APP, join(project, 'first-app.mjs'));
    const result = await run(NODE20, ['--experimental-websocket', 'first-app.mjs', relay.url], project);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^published \S+ at cursor [0-9a-f]{16}-/m);
    assert.match(result.stdout, /^received demo\.hello \{"text":"hello, aNode"\} from anonymous$/m);
  });

  it('on Node 20 without a WebSocket, says how to get one', async () => {
    await copyFile(FIRST_APP, join(project, 'first-app.mjs'));
    const result = await run(NODE20, ['first-app.mjs', relay.url], project);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /no WebSocket in this runtime: on Node 20 run node with --experimental-websocket/);
  });

  it('refused upgrades (an edge without /v1/ws answers 404) reject ready with an error event, and close() ends the script', async () => {
    // A refused upgrade is a failed attempt like any (a WebSocket cannot tell 401 or 404 from a
    // node that is down): the client retries, so the subscription waits until close() ends it.
    const old = createServer((_req, res) => res.writeHead(404).end('not found'));
    const base = await listen(old);
    try {
      const script = `
        import { createClient } from '@anode/client';
        const client = createClient({ url: ${JSON.stringify(base)}, token: 'secret-token' });
        const errors = [];
        client.on('error', (error) => errors.push(error.message));
        const sub = client.subscribe('demo.hello');
        let subOutcome = 'pending';
        sub.ready.then(() => (subOutcome = 'fulfilled'), (e) => (subOutcome = 'rejected:' + e.code + ':' + e.message));
        const [first] = await Promise.allSettled([client.ready]);
        const beforeClose = subOutcome;
        await client.close();
        await sub.ready.catch(() => {});
        const outcome = [first.status + ':' + (first.reason?.code ?? ''), beforeClose, subOutcome];
        console.log(JSON.stringify({ outcome, errors }));
      `;
      await writeFile(join(project, 'refused.mjs'), script);
      const result = await run(NODE20, ['--experimental-websocket', 'refused.mjs'], project, 30_000);
      assert.equal(result.code, 0, result.stderr);
      const { outcome, errors } = JSON.parse(result.stdout) as { outcome: string[]; errors: string[] };
      assert.deepEqual(outcome, ['rejected:unavailable', 'pending', 'rejected:unavailable:client is closed']);
      assert.match(errors[0] ?? '', /cannot open a WebSocket to ws:\/\/127\.0\.0\.1:\d+\/v1\/ws .*serve \/v1\/ws/);
      assert.doesNotMatch(errors.join(' '), /secret-token/, 'the token is not in the error');
    } finally {
      old.close();
    }
  });

  it('runs in Chromium from the installed package', async () => {
    const dist = join(project, 'node_modules/@anode/client/dist/index.js');
    const page = createServer((req, res) => {
      if (req.url === '/client.js') {
        void readFile(dist).then((body) => res.writeHead(200, { 'content-type': 'text/javascript' }).end(body));
      } else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title>');
    });
    const origin = await listen(page);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    try {
      const tab = await browser.newPage();
      await tab.goto(origin);
      const got = await tab.evaluate(async (relayUrl) => {
        const served = '/client.js';
        const { createClient } = (await import(served)) as typeof Client;
        const client = createClient({ url: relayUrl });
        let onData!: (data: unknown) => void;
        const arrived = new Promise<unknown>((resolve) => (onData = resolve));
        await client.subscribe('browser.t', (m) => onData(m.data)).ready;
        const ack = await client.publish('browser.t', { from: 'chromium' });
        const data = await arrived;
        await client.close();
        return { data, cursor: ack.cursor, connected: client.connected };
      }, relay.url);
      assert.deepEqual(got.data, { from: 'chromium' });
      assert.match(got.cursor, /^[0-9a-f]{16}-/);
      assert.equal(got.connected, false);
    } finally {
      await browser.close();
      page.close();
    }
  });
});
