import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as Esbuild from 'esbuild';
import { Miniflare } from 'miniflare';
import type { ClientOptions } from 'ws';

/**
 * The edge Worker on workerd, from plain Node: bundled like wrangler bundles it (esbuild, the
 * copy wrangler itself depends on) and run by miniflare with wrangler.toml's binding and
 * compatibility date, on a free loopback port. Tests and scripts use this; `npm start` uses
 * `wrangler dev` itself.
 */
export interface EdgeRuntime {
  /** `http://127.0.0.1:<port>` */
  url: string;
  wsUrl: string;
  mf: Miniflare;
  stop(): Promise<void>;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let bundled: Promise<string> | undefined;

async function bundle(): Promise<string> {
  const require = createRequire(fileURLToPath(import.meta.resolve('wrangler')));
  const esbuild = require('esbuild') as typeof Esbuild;
  const result = await esbuild.build({
    entryPoints: [`${ROOT}worker/src/index.ts`],
    bundle: true,
    write: false,
    format: 'esm',
    target: 'es2024',
    conditions: ['workerd', 'worker', 'browser'],
    mainFields: ['browser', 'module', 'main'],
    external: ['cloudflare:*', 'node:*'],
    logLevel: 'silent',
  });
  return result.outputFiles[0]?.text ?? '';
}

async function compatibilityDate(): Promise<string> {
  const toml = await readFile(`${ROOT}wrangler.toml`, 'utf8');
  return /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml)?.[1] ?? '2026-04-01';
}

/**
 * A free loopback port for a server that starts a moment later, from below the kernel's
 * ephemeral range: a port 0 pick came from that range, and once closed again the kernel could
 * hand it to any outgoing connection or `listen(0)` of the tests running alongside before the
 * server took it (a fresh-clone CI run lost a test to EADDRINUSE that way). Below the range only
 * another caller of this picks, at random, and each pick is checked free by binding it.
 */
export async function freePort(): Promise<number> {
  const [low, high] = unassignedRange();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await bindable(port)) return port;
  }
  throw new Error(`freePort: no free port found in ${low}-${high - 1} after 200 tries`);
}

/** [low, high): ports neither well known nor ever handed out by the kernel on its own. */
function unassignedRange(): [number, number] {
  let ephemeralLow = 32768;
  try {
    const text = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
    ephemeralLow = Number(text.trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // not Linux: the IANA dynamic range starts at 49152, 32768 is below it and Linux's default
  }
  const low = 20_000;
  return ephemeralLow - low >= 1_000 ? [low, ephemeralLow] : [10_000, Math.max(ephemeralLow, 11_000)];
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * Start the edge. Links need EDGE_URL, the origin relays dial back: unless `vars` names one (an
 * empty string leaves it unset; `http://127.0.0.1:<port>` is served on that port), the edge gets a
 * port chosen first and EDGE_URL set to it.
 */
export async function startEdge(vars: Record<string, string> = {}): Promise<EdgeRuntime> {
  bundled ??= bundle();
  // An EDGE_URL given on loopback names the port to serve on (relays were told that origin).
  const pinned = /^http:\/\/127\.0\.0\.1:(\d+)$/.exec(vars.EDGE_URL ?? '')?.[1];
  for (let attempt = 1; ; attempt++) {
    const port = pinned ? Number(pinned) : await freePort();
    const mf = new Miniflare({
      modules: [{ type: 'ESModule', path: 'index.js', contents: await bundled }],
      compatibilityDate: await compatibilityDate(),
      durableObjects: { TOPIC_HUB: { className: 'TopicHub', useSQLite: true } },
      bindings: { EDGE_URL: `http://127.0.0.1:${port}`, ...vars },
      host: '127.0.0.1',
      port,
      cf: false, // no download of the `Request.cf` sample (tests run offline)
    });
    try {
      const url = (await mf.ready).origin;
      return { url, wsUrl: url.replace(/^http/, 'ws'), mf, stop: () => mf.dispose() };
    } catch (error) {
      // A failed start leaves workerd and miniflare's own server open: close them, or the test
      // process never exits.
      await mf.dispose().catch(() => {});
      const taken = (error as { code?: string }).code === 'ERR_ADDRESS_IN_USE';
      if (!taken || pinned || attempt >= 3) throw error;
    }
  }
}

/**
 * `ws` client options for sockets the edge may close: workerd sends the close frame at once but
 * releases the TCP connection only when the object next hibernates (about 10 s locally), and `ws`
 * reports `close` when TCP closes (`closeTimeout` is a real ws option its types leave out).
 */
export const QUICK_CLOSE = { closeTimeout: 200 } as ClientOptions;
