import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
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

/** A free loopback port (closed again at once: the edge takes it a moment later). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
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
  const url = (await mf.ready).origin;
  return { url, wsUrl: url.replace(/^http/, 'ws'), mf, stop: () => mf.dispose() };
}

/**
 * `ws` client options for sockets the edge may close: workerd sends the close frame at once but
 * releases the TCP connection only when the object next hibernates (about 10 s locally), and `ws`
 * reports `close` when TCP closes (`closeTimeout` is a real ws option its types leave out).
 */
export const QUICK_CLOSE = { closeTimeout: 200 } as ClientOptions;
