import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';

/** Where `vite build` puts the page (relay-node/dashboard/dist). */
export const DEFAULT_DIST_DIR = fileURLToPath(new URL('../../dashboard/dist/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>aNode dashboard not built</title></head>
<body><h1>Dashboard not built</h1><p>The relay is running, but its dashboard has not been built.
Run <code>npm run build</code> (or <code>npm run build -w @anode/relay-node</code>) and reload.</p>
<p>The status API is at <a href="/v1/status">/v1/status</a>.</p></body></html>`;

/**
 * The built page at `/` and `/dashboard/`, its hashed assets under `/dashboard/assets/` (cached
 * for good: their names change with their content). The HTML itself holds no data, so it is
 * served without the admin token; the data endpoints are guarded.
 */
export function mountStaticAssets(app: Hono, distDir = DEFAULT_DIST_DIR) {
  const index = async () => {
    try {
      return new Response(await readFile(join(distDir, 'index.html')), {
        headers: { 'content-type': TYPES['.html']!, 'cache-control': 'no-cache', ...SECURITY_HEADERS },
      });
    } catch {
      return new Response(NOT_BUILT, { status: 503, headers: { 'content-type': TYPES['.html']! } });
    }
  };
  app.get('/', index);
  app.get('/dashboard', (c) => c.redirect('/dashboard/'));
  app.get('/dashboard/', index);
  app.get('/dashboard/assets/:file', async (c) => {
    const file = normalize(c.req.param('file'));
    if (file.includes('/') || file.includes('\\') || file.startsWith('.')) return c.notFound();
    try {
      const body = await readFile(join(distDir, 'assets', file));
      return new Response(body, {
        headers: {
          'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
          'cache-control': 'public, max-age=31536000, immutable',
          ...SECURITY_HEADERS,
        },
      });
    } catch {
      return c.notFound();
    }
  });
}
