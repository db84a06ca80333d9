import { noise } from '@libp2p/noise';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@libp2p/yamux';
import { createLibp2p } from 'libp2p';
import { CATCH_UP_PROTOCOL } from './catch-up.ts';

/**
 * A catch-up peer in a process of its own, for catch-up.test.ts: a test freezes it (SIGSTOP), as
 * a paused or swapped-out relay is frozen, which a peer in the test's own process cannot be. It
 * listens on loopback, prints its address as one line, and takes catch-up streams without ever
 * answering; the test kills it.
 */
const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionMonitor: { enabled: false },
});
await node.handle(CATCH_UP_PROTOCOL, () => {}, { runOnLimitedConnection: true });
process.stdout.write(`${node.getMultiaddrs()[0]?.toString()}\n`);
