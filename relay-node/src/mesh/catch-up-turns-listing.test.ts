import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { createHybridClock } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { catchUpFrom, serveCatchUp } from './catch-up.ts';
import { planCatchUp } from './catch-up-progress.ts';
import type { Host } from './host.ts';
import { loopbackNodes } from './loopback-nodes.fixture.ts';
import { createShards } from './shards.ts';

// A turn going on from an earlier one (a yield, the same connection) listed every topic that turn
// read whole again (one request per listing page of 1,000 names), and such a turn can be yielded at
// run.since + longRunMs whether it moved or not: once listing what earlier turns read took
// longRunMs (many topics, a slow or relayed link), no turn read anything new while a peer waited.
const { node, stop } = loopbackNodes();
after(stop);

it('a resumed turn lists nothing its last turn read whole', { timeout: 30_000 }, async () => {
  const shards = createShards(1);
  const name = (i: number) => `${`${'q'.repeat(64)}.`.repeat(6)}${String(i).padStart(5, '0')}`;
  const READ = 3_000;
  const topics = Array.from({ length: READ + 5 }, (_, i) => name(i));
  const clock = createHybridClock('s');
  const store = memoryStore();
  await store.append(
    topics.map((topic, i): Envelope => ({ id: `m${i}`, topic, cursor: clock.next(), source: 's', ts: 0, data: i })),
  );
  const log = createLogger('silent');
  const server = await node();
  await serveCatchUp(server as unknown as Host, { store, shards, maxMessageBytes: 64 * 1024, log });
  const client = await node();
  await client.dial(server.getMultiaddrs());
  const last = { after: '0', started: 1_000_000, through: name(READ - 1) };
  const { plan } = planCatchUp('0', 2_000_000, 1_000, last, true);
  // The listing requests the real catchUpFrom writes, counted where it encodes them (the server
  // lists from a copy it keeps per stream, so its store cannot count them).
  let listings = 0;
  const encode = TextEncoder.prototype.encode;
  TextEncoder.prototype.encode = function (text?: string) {
    if (text?.includes('"op":"topics"')) listings++;
    return encode.call(this, text);
  };
  const fresh = await catchUpFrom(client as unknown as Host, shards, 64 * 1024, {
    peer: server.peerId,
    shards: [0],
    after: '0',
    ingest: async (envelopes) => envelopes.length,
    plan,
    timeoutMs: 5_000,
  }).finally(() => {
    TextEncoder.prototype.encode = encode;
  });
  await store.close();
  assert.equal(fresh, 5);
  assert.ok(listings <= 1, `${listings} listing pages asked for the 5 topics past the last turn's`);
});
