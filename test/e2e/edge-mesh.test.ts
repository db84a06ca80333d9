import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { type EdgeRuntime, freePort, LINK_SECRET, publish, receivedAll, startEdge } from '../helpers/edge.ts';
import { FAST_MESH, meshStatus, waitForFullMesh } from '../helpers/mesh.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

const TOPIC = 'edgemesh.orders';

describe('edge and a two-relay mesh: the edge links to one relay, subscribers sit on the other', () => {
  let linkedRelay: TestRelay;
  let farRelay: TestRelay;
  let edge: EdgeRuntime;
  before(async () => {
    const edgeUrl = `http://127.0.0.1:${await freePort()}`;
    linkedRelay = await startRelay({
      ...FAST_MESH,
      listen: '/ip4/127.0.0.1/tcp/0',
      'edge-link-secret': LINK_SECRET,
      'edge-url': edgeUrl,
    });
    const bootstrap = (await meshStatus(linkedRelay.url)).node.multiaddrs[0] as string;
    farRelay = await startRelay({ ...FAST_MESH, bootstrap });
    await waitForFullMesh([linkedRelay.url, farRelay.url], createShards(32).gossipTopic(TOPIC));
    edge = await startEdge({ RELAY_URLS: linkedRelay.url, LINK_SECRET, LINK_WAIT_MS: '2000', EDGE_URL: edgeUrl });
  });
  after(async () => {
    await edge?.stop();
    await farRelay?.stop();
    await linkedRelay?.stop();
  });

  it('carries a publish at the edge to a subscriber on a relay the edge is not linked to, and back', async () => {
    const far = await openSocket(`${farRelay.wsUrl}/v1/topics/${TOPIC}/ws`);
    await far.next((f) => f.op === 'subscribed');
    const atEdge = await openSocket(`${edge.wsUrl}/v1/topics/${TOPIC}/ws`);
    await atEdge.next((f) => f.op === 'subscribed');

    const up = await publish(edge.url, TOPIC, ['from the edge']);
    const [onFar] = await receivedAll(
      far,
      up.map((m) => m.id),
    );
    assert.equal(onFar?.cursor, up[0]?.cursor, 'same id and cursor across the mesh');

    const down = await publish(farRelay.url, TOPIC, ['from the far relay']);
    await receivedAll(
      atEdge,
      down.map((m) => m.id),
    );
    far.close();
    atEdge.close();
  });
});
