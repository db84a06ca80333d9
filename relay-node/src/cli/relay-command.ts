import { parseArgs } from 'node:util';
import { CONFIG_KEYS, ConfigError, isListKey, loadConfig } from '../config.ts';
import { UsageError } from './usage-error.ts';

/**
 * `anode relay`: parses and validates the whole config first, so bad input is refused before the
 * relay's heavy modules (libp2p, the stores, the dashboard) are even loaded.
 */
export async function relayCommand(args: string[]): Promise<void> {
  const flags = relayFlags(args);
  let config;
  try {
    config = loadConfig({ flags, env: process.env });
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.message, 'anode --help lists every option');
    throw error;
  }
  const { runRelay } = await import('../main.ts');
  await runRelay(config);
}

/**
 * The relay's options as loadConfig takes them. Every option may repeat: list keys collect the
 * values, scalar keys take the last one. `strict: false` (npm start reading the relay's auth
 * from the arguments it passes on) skips what is not a relay option instead of refusing it.
 */
export function relayFlags(args: string[], { strict = true } = {}): Record<string, string> {
  const options = Object.fromEntries(
    ['config', ...CONFIG_KEYS.map((k) => k.replaceAll('_', '-'))].map((name) => [
      name,
      { type: 'string' as const, multiple: true },
    ]),
  );
  const { values } = parseArgs({ args, options, strict, allowPositionals: !strict });
  const flags: Record<string, string> = {};
  for (const [name, given] of Object.entries(values)) {
    if (!Array.isArray(given) || !Object.hasOwn(options, name)) continue;
    const key = name.replaceAll('-', '_') as (typeof CONFIG_KEYS)[number];
    const texts = given.map(String);
    flags[name] = isListKey(key) ? texts.join(',') : (texts.at(-1) ?? '');
  }
  return flags;
}
