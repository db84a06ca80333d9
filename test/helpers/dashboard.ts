import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_DIST_DIR } from '@anode/relay-node/src/dashboard/static-assets.ts';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

/** Debian's Chromium driven by playwright-core, and the built dashboard page, for browser tests. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Screenshots (gitignored). */
export const SHOTS = fileURLToPath(new URL('../../test-results/', import.meta.url));
const RELAY_DIR = fileURLToPath(new URL('../../relay-node/', import.meta.url));

/** Build the page once if a previous `npm run build` has not. */
export function ensureDashboardBuilt() {
  if (existsSync(`${DEFAULT_DIST_DIR}/index.html`)) return;
  const vite = fileURLToPath(new URL('../../node_modules/vite/bin/vite.js', import.meta.url));
  const result = spawnSync(process.execPath, [vite, 'build', '--config', 'dashboard/vite.config.ts'], {
    cwd: RELAY_DIR,
    stdio: 'inherit',
  });
  assert.equal(result.status, 0, 'vite build failed');
}

export function launchChromium(profile: string, viewport = { width: 1280, height: 900 }): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** A new page that records console errors and uncaught exceptions. */
export async function openPage(browser: BrowserContext, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(url);
  return { page, errors };
}
