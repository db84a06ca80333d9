import type { RelayConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { createRelayNode } from './node.ts';

/**
 * The composition root of a relay process: builds the node from config, starts it, and stops
 * it in reverse order on SIGTERM or SIGINT (a second signal exits at once).
 */
export async function runRelay(config: RelayConfig): Promise<void> {
  const log = createLogger(config.log_level);
  const node = await createRelayNode(config, log);
  await node.start();
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal }, 'signal received');
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdown_grace_ms);
    force.unref();
    node.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
