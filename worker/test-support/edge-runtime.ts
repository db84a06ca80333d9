import { readFile } from 'node:fs/promises';
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

export async function startEdge(vars: Record<string, string> = {}): Promise<EdgeRuntime> {
  bundled ??= bundle();
  const mf = new Miniflare({
    modules: [{ type: 'ESModule', path: 'index.js', contents: await bundled }],
    compatibilityDate: await compatibilityDate(),
    durableObjects: { TOPIC_HUB: { className: 'TopicHub', useSQLite: true } },
    bindings: vars,
    host: '127.0.0.1',
    port: 0,
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
