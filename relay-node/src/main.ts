import type { RelayConfig } from './config.ts';
import { EXIT_CODES } from './exit-codes.ts';
import { createProcessLogger, type Logger } from './logger.ts';
import { createRelayNode, type RelayNode } from './node.ts';

/** How often the relay checks whether the process that started it is still there. */
const PARENT_CHECK_MS = 1_000;

/**
 * The composition root of a relay process: builds the node from config, starts it, and stops
 * it in reverse order on SIGTERM or SIGINT (a second signal exits at once). Every way out is
 * bounded by `shutdown_grace_ms` and ends with one of EXIT_CODES: a start that fails stops what
 * had started and exits (it must not linger half-started, holding ports), and so does a relay
 * whose standard output lost its reader (a supervisor that was killed).
 */
export async function runRelay(config: RelayConfig): Promise<void> {
  const { log, onOutputLost } = createProcessLogger(config.log_level);
  let node: RelayNode | undefined;
  let stopping = false;
  const exit = (code: number, reason: string, error?: unknown) => {
    if (stopping) return;
    stopping = true;
    if (error === undefined) log.info({ reason, exit_code: code }, 'stopping');
    else log.error({ err: error, reason, exit_code: code }, 'stopping');
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(code === EXIT_CODES.ok ? EXIT_CODES.failed : code);
    }, config.shutdown_grace_ms);
    force.unref();
    (node?.stop() ?? Promise.resolve()).then(
      () => process.exit(code),
      (stopError: unknown) => {
        log.error({ err: stopError }, 'shutdown failed');
        process.exit(code === EXIT_CODES.ok ? EXIT_CODES.failed : code);
      },
    );
  };
  const onSignal = (signal: string) => {
    if (stopping) process.exit(EXIT_CODES.failed);
    exit(EXIT_CODES.ok, signal);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  onOutputLost(() => exit(EXIT_CODES.output_lost, 'standard output has no reader'));
  watchParent(log);

  try {
    node = await createRelayNode(config, log);
    const { url } = await node.start();
    // Scripts and supervisors wait for this line (docs/relay.md): it is printed at any log level.
    if (!log.isLevelEnabled('info')) log.child({}, { level: 'info' }).info({ url }, `relay ready at ${url}`);
  } catch (error) {
    const busy = portInUse(error);
    if (busy) {
      process.stderr.write(`anode: the relay could not start: ${busy}\n`);
      exit(EXIT_CODES.start_failed, busy);
      return;
    }
    process.stderr.write(`anode: the relay could not start: ${(error as Error).message}\n`);
    exit(EXIT_CODES.start_failed, 'start failed', error);
  }
}

/** A port someone else holds, said in one line with what to do (its stack says nothing more). */
function portInUse(error: unknown, depth = 0): string | undefined {
  const e = error as (NodeJS.ErrnoException & { port?: number; address?: string; errors?: unknown[] }) | undefined;
  if (!e || typeof e !== 'object' || depth > 5) return undefined;
  // libp2p reports a mesh listen address it could not bind only in its message text.
  const quoted = /EADDRINUSE: address already in use (\S+):(\d+)/.exec(String(e.message));
  if (e.code === 'EADDRINUSE' || quoted) {
    const port = e.port ?? quoted?.[2];
    const address = e.address ?? quoted?.[1];
    const where = port === undefined ? 'a port it needs' : `port ${port}${address ? ` on ${address}` : ''}`;
    return (
      `${where} is in use (EADDRINUSE): stop what listens there (another relay? npm start?) ` +
      'or choose another port (--port for HTTP, --listen for the mesh; port 0 picks a free one)'
    );
  }
  for (const inner of [e.cause, ...(Array.isArray(e.errors) ? e.errors : [])]) {
    const found = portInUse(inner, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * A relay learns that its stdout pipe lost its reader only when it next writes. When the process
 * that started it goes away (the usual reader of that pipe), say so: the write either reaches
 * a reader that is still there, or fails with EPIPE and the relay stops (onOutputLost).
 */
function watchParent(log: Logger): void {
  let parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    log.warn({ was: parent, now: process.ppid }, 'the process that started this relay has exited');
    parent = process.ppid;
  }, PARENT_CHECK_MS);
  timer.unref();
}
