// The command line of every benchmark relay, in one place.
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../relay-node/bin/anode.ts', import.meta.url));

/**
 * Node's arguments for a relay process: a CPU profile written to `cpuProfDir` when it stops
 * (SIGTERM), a free port, info logs (the "relay ready at" line), no publish rate limit, no
 * connection cap per address and no fsync per commit, then `extra`.
 */
export function benchRelayArgv(dataDir: string, options: { cpuProfDir?: string; extra?: string[] } = {}): string[] {
  return [
    ...(options.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir] : []),
    CLI,
    'relay',
    '--port',
    '0',
    '--data-dir',
    dataDir,
    '--log-level',
    'info',
    '--publish-rate',
    '1000000',
    '--publish-burst',
    '1000000',
    '--store-fsync',
    'false',
    // Load generators open thousands of sockets from one address.
    '--max-connections-per-address',
    '0',
    ...(options.extra ?? []),
  ];
}
