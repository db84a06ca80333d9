import { EXIT_CODES } from './exit-codes.ts';
import { UsageError, usageErrorOf } from './cli/usage-error.ts';
import { VERSION } from './version.ts';

/**
 * The `anode` command. Each command loads only what it needs, by dynamic import: `--help` and
 * `token` answer at once, and only `relay` pays for libp2p, the stores and the dashboard.
 * Bad input is one line on stderr with a hint and exit code `usage` (EXIT_CODES).
 */
export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const wantsHelp = rest.includes('--help') || rest.includes('-h');
  try {
    switch (command) {
      case 'relay':
        if (wantsHelp) return await printUsage();
        return await (await import('./cli/relay-command.ts')).relayCommand(rest);
      case 'token':
        if (wantsHelp) return await printUsage();
        return await (await import('./cli/token-command.ts')).tokenCommand(rest);
      case '--version':
      case '-v':
        return void process.stdout.write(`${VERSION}\n`);
      case undefined:
        // No command is a usage error (a script whose command variable came out empty fails,
        // not succeeds): the help goes to stderr, exit code `usage`.
        await printUsage(process.stderr);
        process.exitCode = EXIT_CODES.usage;
        return;
      case 'help':
      case '--help':
      case '-h':
        return await printUsage();
      default:
        throw new UsageError(
          command.startsWith('-') ? `unknown option ${command}` : `unknown command "${command}"`,
          'the commands are relay and token; anode --help lists their options',
        );
    }
  } catch (error) {
    const usage = usageErrorOf(error, command ?? '');
    if (usage) {
      process.stderr.write(`anode: ${usage.message}${usage.hint ? ` (${usage.hint})` : ''}\n`);
      process.exitCode = EXIT_CODES.usage;
      return;
    }
    process.stderr.write(`anode: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = EXIT_CODES.failed;
  }
}

async function printUsage(to: NodeJS.WritableStream = process.stdout): Promise<void> {
  to.write((await import('./cli/usage.ts')).usage());
}

if (import.meta.main) await main(process.argv.slice(2));
