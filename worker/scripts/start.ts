// `npm start`: a relay on http://127.0.0.1:8080 and the edge Worker under `wrangler dev` on
// http://127.0.0.1:8787, wired to each other with a fresh link secret, in one terminal, plus a
// made-up market feed (relay-node/examples/demo-feed.ts) that the relay pulls as the sources of
// relay-node/examples/sources.json, so the dashboard and subscribers have live data at once
// (ANODE_DEMO=0: no demo). Extra arguments go to the relay (`npm start -- --log-level debug`).
// With auth on at the relay (ANODE_JWT_SECRET, `--jwt-secret`, public keys), the edge takes the
// same secret, keys and audiences, so a request refused at one is refused at the other.
// Ctrl-C stops everything.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { type DemoFeed, startDemoFeed } from '../../relay-node/examples/demo-feed.ts';
import { relayFlags } from '../../relay-node/src/cli/relay-command.ts';
import { loadConfig } from '../../relay-node/src/config.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RELAY_PORT = Number(process.env.ANODE_PORT ?? 8080);
const EDGE_PORT = Number(process.env.ANODE_EDGE_PORT ?? 8787);
const EDGE_URL = `http://127.0.0.1:${EDGE_PORT}`;
// A secret for this run only (or yours, if you set one); never written to the repo.
const secret = process.env.ANODE_EDGE_LINK_SECRET ?? randomBytes(24).toString('hex');

const children: ChildProcess[] = [];
let stopping = false;

function prefixed(child: ChildProcess, name: string): void {
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream?.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) process.stdout.write(`[${name}] ${line}\n`);
    });
  }
}

function waitFor(child: ChildProcess, pattern: RegExp, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const match = pattern.exec(seen);
      if (match) {
        child.stdout?.off('data', onData);
        resolve(match[1] ?? match[0]);
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before it was ready`)));
  });
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  const exits = children.map(
    (child) =>
      new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve()))),
  );
  for (const child of children) child.kill('SIGTERM');
  const force = setTimeout(() => children.forEach((child) => child.kill('SIGKILL')), 8_000);
  await Promise.all(exits);
  clearTimeout(force);
  await feed?.stop();
  await rm(envDir, { recursive: true, force: true });
  process.exit(code);
}

const extra = process.argv.slice(2);
const envDir = await mkdtemp(join(tmpdir(), 'anode-edge-'));
const envFile = join(envDir, 'edge.env');
const auth = await relayAuth(['--port', String(RELAY_PORT), ...extra]).catch((error: Error) => {
  process.stderr.write(`npm start: ${error.message}\n`);
  return process.exit(1);
});
try {
  await writeFile(envFile, edgeEnv(auth), { mode: 0o600 });
} catch (error) {
  await rm(envDir, { recursive: true, force: true });
  process.stderr.write(`npm start: ${(error as Error).message}\n`);
  process.exit(1);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
// If this script dies some other way, take the children with it.
process.on('exit', () => children.forEach((child) => child.exitCode === null && child.kill('SIGKILL')));

// The feed's items carry whole seconds: one stamped from this second on was pulled by this run.
const feedSince = Math.floor(Date.now() / 1000) * 1000;
const feed = process.env.ANODE_DEMO === '0' ? undefined : await startDemoFeed();
const relay = spawn(
  process.execPath,
  [join(ROOT, 'relay-node/bin/anode.ts'), 'relay', '--port', String(RELAY_PORT), ...(await demoArgs(feed)), ...extra],
  {
    cwd: ROOT,
    env: { ...process.env, ANODE_EDGE_LINK_SECRET: secret, ANODE_EDGE_URL: EDGE_URL },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group: Ctrl-C reaches this script, which stops it once
  },
);
children.push(relay);
prefixed(relay, 'relay');
relay.once('exit', (code) => void stop(code ?? 1));
const relayUrl = await waitFor(relay, /relay ready at (http:\/\/[^"\s]+)/, 'relay').catch(() => undefined);
if (!relayUrl) await stop(1);

const wrangler = spawn(
  process.execPath,
  [
    join(ROOT, 'node_modules/wrangler/bin/wrangler.js'),
    'dev',
    '--config',
    join(ROOT, 'wrangler.toml'),
    '--ip',
    '127.0.0.1',
    '--port',
    String(EDGE_PORT),
    '--env-file',
    envFile,
    '--var',
    `RELAY_URLS:${relayUrl}`,
    '--var',
    `EDGE_URL:${EDGE_URL}`,
    '--show-interactive-dev-session=false',
  ],
  {
    cwd: ROOT,
    // Offline-friendly: no telemetry, no download of the `Request.cf` sample.
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  },
);
children.push(wrangler);
prefixed(wrangler, 'edge');
wrangler.once('exit', (code) => void stop(code ?? 1));
await waitFor(wrangler, /Ready on (http:\/\/\S+)/, 'wrangler dev');
// A source's first poll comes at a random moment of its interval (2 s for coin-prices): the
// banner below promises live data, so it waits (5 s at most) for the first price to be stored.
if (feed) await firstPrice(relayUrl as string, 5_000);
const haunting = await adminSources(dataDirOf(extra));
process.stdout.write(
  `\naNode is up: relay ${relayUrl} (dashboard: ${relayUrl}/), edge ${EDGE_URL} (linked).\n` +
    (feed
      ? `Live demo data: the relay pulls a local demo feed (sources coin-prices and trades-feed) into prices.btc,\n` +
        `prices.eth, prices.sol and trades.all; watch them on the dashboard.\n`
      : '') +
    (haunting.length
      ? `Sources an admin API created in an earlier run are back (they live in the data folder): ${haunting.join(', ')}.\n` +
        `  # To delete one: npm start -- --admin-token <16+ characters>, then\n` +
        `  # curl -XDELETE -H 'authorization: Bearer <that token>' ${relayUrl}/v1/admin/sources/<name>\n`
      : '') +
    authNote(auth) +
    `Try:\n` +
    `  npx node examples/first-app.mjs ${relayUrl}   # subscribe, publish, receive, exit (npx: the repo's Node 24)\n` +
    `  curl -s${bearer(auth)} '${relayUrl}/v1/topics/prices.btc/latest'\n` +
    `  curl -s${bearer(auth)} -XPOST ${EDGE_URL}/v1/topics/demo.hello/messages -H 'content-type: application/json' -d '{"data":"hi from the edge"}'\n` +
    `  curl -s${bearer(auth)} '${EDGE_URL}/v1/topics/demo.hello/messages'\n` +
    `  # The edge acknowledges once it holds a message, then forwards it: the relay has it a moment later\n` +
    `  # (seconds for a topic's first message, while its link comes up): ${relayUrl}/v1/topics/demo.hello/messages\n` +
    `Ctrl-C stops everything.\n\n`,
);

/** Resolves once the relay holds a price from coin-prices pulled by this run, or after `withinMs`. */
async function firstPrice(relay: string, withinMs: number): Promise<void> {
  const since = feedSince;
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const latest = (await fetch(`${relay}/v1/topics/prices.btc/latest`)
      .then((r) => r.json())
      .catch(() => undefined)) as { sources?: Record<string, { ts?: number }> } | undefined;
    if ((latest?.sources?.['coin-prices']?.ts ?? 0) >= since) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The demo sources: examples/sources.json's definitions, pointed at this run's demo feed. */
async function demoArgs(demo: DemoFeed | undefined): Promise<string[]> {
  if (!demo) return [];
  const example = JSON.parse(await readFile(join(ROOT, 'relay-node/examples/sources.json'), 'utf8')) as {
    plugins_dir: string;
    source_pipelines: unknown[];
    sources: { kind: string; url: string }[];
  };
  const sources = example.sources.map((source) => ({
    ...source,
    url: source.kind === 'websocket' ? demo.streamUrl : demo.pricesUrl,
  }));
  return [
    '--plugins-dir',
    join(ROOT, example.plugins_dir),
    '--source-pipelines',
    JSON.stringify(example.source_pipelines),
    '--sources',
    JSON.stringify(sources),
  ];
}

function dataDirOf(args: string[]): string {
  const { values } = parseArgs({ args, options: { 'data-dir': { type: 'string' } }, strict: false });
  const given = values['data-dir'];
  return resolve(ROOT, typeof given === 'string' ? given : (process.env.ANODE_DATA_DIR ?? '.data/relay'));
}

/**
 * Names of the sources an admin API created or replaced in an earlier run: they are kept in the
 * data folder and come back every run, but the admin API is off here unless a token is given.
 */
async function adminSources(dataDir: string): Promise<string[]> {
  try {
    const { changes } = JSON.parse(await readFile(join(dataDir, 'sources.json'), 'utf8')) as {
      changes?: Record<string, unknown>;
    };
    return Object.entries(changes ?? {})
      .filter(([, definition]) => definition !== null)
      .map(([name]) => name);
  } catch {
    return [];
  }
}

/** The relay's auth settings, read as the relay reads them (its flags, environment, config file). */
interface RelayAuth {
  secret: string | undefined;
  /** The secret is ANODE_JWT_SECRET(_FILE)'s, which `anode token` reads too. */
  secretFromEnv: boolean;
  /** The PEM of each jwt_public_keys file. */
  publicKeys: string[];
  audience: string[];
}

async function relayAuth(args: string[]): Promise<RelayAuth> {
  const flags = relayFlags(args, { strict: false });
  const config = loadConfig({ flags, env: process.env });
  const publicKeys = await Promise.all(config.jwt_public_keys.map((path) => readFile(resolve(ROOT, path), 'utf8')));
  const secretFromEnv =
    !flags['jwt-secret'] && Boolean(process.env.ANODE_JWT_SECRET || process.env.ANODE_JWT_SECRET_FILE);
  return { secret: config.jwt_secret || undefined, secretFromEnv, publicKeys, audience: config.jwt_audience };
}

/** The edge's secrets as a dotenv file for `wrangler dev --env-file`: the link secret and the relay's auth. */
function edgeEnv(auth: RelayAuth): string {
  // Each with the relay setting it comes from, which an error names (the user set that one).
  const vars: [string, string | undefined, string][] = [
    ['LINK_SECRET', secret, 'the link secret'],
    ['JWT_SECRET', auth.secret, 'jwt_secret (ANODE_JWT_SECRET, ANODE_JWT_SECRET_FILE or --jwt-secret)'],
    ['JWT_PUBLIC_KEYS', auth.publicKeys.length > 0 ? auth.publicKeys.join('\n') : undefined, 'jwt_public_keys'],
    ['JWT_AUDIENCE', auth.audience.length > 0 ? auth.audience.join(',') : undefined, 'jwt_audience'],
  ];
  return vars
    .filter((entry): entry is [string, string, string] => entry[1] !== undefined)
    .map(([name, value, setting]) => `${name}=${dotenvValue(setting, value)}\n`)
    .join('');
}

/**
 * A value wrangler's dotenv reads back unchanged: in a quote it does not hold (a quoted value may
 * span lines), with `$` escaped from dotenv-expand. Double quotes come last: dotenv turns `\n` in
 * them into a newline.
 */
function dotenvValue(setting: string, value: string): string {
  const quote = ["'", '`', '"'].find((q) => !value.includes(q));
  if (quote === undefined || value.includes('\\$') || (quote === '"' && /\\[nr]/.test(value))) {
    throw new Error(
      `${setting} holds what the local edge's env file cannot carry (all three quote characters ' \` ", ` +
        `or \\$, or \\n with the first two): use a secret without them to run npm start (the relay alone takes it)`,
    );
  }
  return `${quote}${value.replaceAll('$', '\\$')}${quote}`;
}

function authOn(auth: RelayAuth): boolean {
  return auth.secret !== undefined || auth.publicKeys.length > 0;
}

/** `-H` with the token of authNote's example, when auth is on. */
function bearer(auth: RelayAuth): string {
  return authOn(auth) ? ` -H "authorization: Bearer $ANODE_TOKEN"` : '';
}

/** Auth on: the banner's requests need a token, and this says how to mint one. */
function authNote(auth: RelayAuth): string {
  if (!authOn(auth)) return '';
  const audience = auth.audience[0] === undefined ? '' : ` --audience ${auth.audience[0]}`;
  // A secret given another way than ANODE_JWT_SECRET(_FILE) (a flag, a config file) must be
  // passed to `anode token`.
  const secretFlag = auth.secretFromEnv ? '' : ' --secret <your jwt_secret>';
  const mint =
    auth.secret === undefined
      ? `  # public keys only: your issuer signs tokens; this one needs pub demo.>, sub demo.> and prices.>\n` +
        `  export ANODE_TOKEN=<that token>\n`
      : `  export ANODE_TOKEN="$(npx anode token${secretFlag}${audience} --subject try --pub 'demo.>' --sub 'demo.>' --sub 'prices.>')"\n`;
  return (
    `Auth is on (the relay's jwt settings, which the edge was given too): a request without a token is\n` +
    `refused 401 at both. Mint a token first (\`npx anode token --help\`):\n` +
    mint
  );
}
