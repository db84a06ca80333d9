/**
 * Bad input on the command line or in the config: printed as one line with a hint, exit code
 * `usage` (2), and nothing was started. Anything else that escapes a command is a bug and keeps
 * its stack.
 */
export class UsageError extends Error {
  override name = 'UsageError';

  /** What to do about it, e.g. the accepted form of a value. */
  readonly hint: string | undefined;

  constructor(message: string, hint?: string) {
    super(message);
    this.hint = hint;
  }
}

const PARSE_ARGS_ERROR = /^ERR_PARSE_ARGS_/;

/** The error `util.parseArgs` throws for an unknown option or a missing value, as a UsageError. */
export function usageErrorOf(error: unknown, command: string): UsageError | undefined {
  if (error instanceof UsageError) return error;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || !PARSE_ARGS_ERROR.test(code) || typeof message !== 'string') return undefined;
  // `--port $PORT --data-dir x` with PORT unset: the option took no value, the next word is an option.
  const ambiguous = /^Option '(--[^']+)' argument is ambiguous/.exec(message)?.[1];
  if (ambiguous) {
    return new UsageError(
      `${command}: ${ambiguous} has no value: the word after it starts with a dash`,
      `give ${ambiguous} a value, which an empty shell variable does not; one that starts with a dash goes as ${ambiguous}=-value`,
    );
  }
  // Node's text goes on about positionals after `--`; its first sentence is the useful part.
  const first = message.split(/\.\s/)[0]?.replace(/\.$/, '') ?? message;
  return new UsageError(
    `${command}: ${first.charAt(0).toLowerCase()}${first.slice(1)}`,
    `anode ${command} --help lists the options`,
  );
}
