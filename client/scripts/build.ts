import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/**
 * Builds the package a user installs: one ES module with the protocol pieces it uses bundled in
 * (so it has no dependencies and runs in browsers and Node >= 20 alike), and the type
 * declarations beside it (tsc, from the same sources).
 */
const root = fileURLToPath(new URL('..', import.meta.url));
rmSync(`${root}/dist`, { recursive: true, force: true });
await build({
  entryPoints: [`${root}/src/index.ts`],
  outfile: `${root}/dist/index.js`,
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  sourcemap: true,
  logLevel: 'warning',
});
const tsc = spawnSync(
  process.execPath,
  [fileURLToPath(import.meta.resolve('typescript/bin/tsc')), '-p', `${root}/tsconfig.build.json`],
  {
    stdio: 'inherit',
  },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
// tsc keeps `.ts` in the declarations' relative imports; a project without
// allowImportingTsExtensions reads `.js` (which finds the `.d.ts` beside it).
for (const file of readdirSync(`${root}/dist/types`, { recursive: true, encoding: 'utf8' })) {
  if (!file.endsWith('.d.ts')) continue;
  const path = `${root}/dist/types/${file}`;
  writeFileSync(path, readFileSync(path, 'utf8').replace(/(from '\.{1,2}\/[^']+)\.ts'/g, "$1.js'"));
}
