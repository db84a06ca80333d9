import { parseArgs } from 'node:util';
import { signToken } from '@anode/shared';
import { CONFIG_KEYS, ConfigError, configHelp, isListKey, loadConfig } from './config.ts';
import { runRelay } from './main.ts';
import { VERSION } from './version.ts';

const USAGE = `aNode ${VERSION}

Usage:
  anode relay [--port <n>] [--data-dir <dir>] [--config <file.json>] [options]
  anode token --secret <s> [--subject <name>] [--pub <pattern>]... [--sub <pattern>]... [--src <pattern>]... [--expires 1h]
  anode --help | --version

Relay options (each also ANODE_<KEY> in the environment or <key> in the JSON config file):
  flag                      environment                   default    meaning
${configHelp()}
`;

async function relay(args: string[]): Promise<void> {
  // Every option may repeat: list keys collect the values, scalar keys take the last one.
  const options = Object.fromEntries(
    ['config', ...CONFIG_KEYS.map((k) => k.replaceAll('_', '-'))].map((name) => [
      name,
      { type: 'string' as const, multiple: true },
    ]),
  );
  const { values } = parseArgs({ args, options, strict: true, allowPositionals: false });
  const flags: Record<string, string> = {};
  for (const [name, given] of Object.entries(values as Record<string, string[]>)) {
    const key = name.replaceAll('-', '_') as (typeof CONFIG_KEYS)[number];
    flags[name] = isListKey(key) ? given.join(',') : (given.at(-1) ?? '');
  }
  const config = loadConfig({ flags, env: process.env });
  await runRelay(config);
}

async function token(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      secret: { type: 'string' },
      pub: { type: 'string', multiple: true },
      sub: { type: 'string', multiple: true },
      subject: { type: 'string' },
      src: { type: 'string', multiple: true },
      expires: { type: 'string', default: '1h' },
    },
  });
  const secret = values.secret ?? process.env.ANODE_JWT_SECRET;
  if (!secret) throw new ConfigError('token: --secret (or ANODE_JWT_SECRET) is required');
  process.stdout.write(
    `${await signToken(
      secret,
      {
        pub: values.pub ?? [],
        sub: values.sub ?? [],
        ...(values.subject === undefined ? {} : { subject: values.subject }),
        ...(values.src === undefined ? {} : { src: values.src }),
      },
      values.expires,
    )}\n`,
  );
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    if (command === 'relay') return await relay(rest);
    if (command === 'token') return await token(rest);
    if (command === '--version' || command === '-v') return void process.stdout.write(`${VERSION}\n`);
    process.stdout.write(USAGE);
    if (command !== '--help' && command !== '-h' && command !== undefined) process.exitCode = 2;
  } catch (error) {
    const known = error instanceof ConfigError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`anode: ${(error as Error).message}\n`);
    if (!known) process.stderr.write(`${(error as Error).stack}\n`);
    process.exitCode = 2;
  }
}

if (import.meta.main) await main(process.argv.slice(2));
