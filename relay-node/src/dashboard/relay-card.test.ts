import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { relayCard } from './relay-card.ts';

describe('relay card', () => {
  it('picks what the cluster view shows and nothing else: no source URLs, headers or tokens', () => {
    const card = relayCard({
      node: { id: 'n1', peer_id: 'p1', version: '0.1.0', protocol: 1, started_at: 'x', url: 'http://127.0.0.1:1' },
      store: { kind: 'cassandra', ok: true, state: 'connected', nodes: [{ address: '127.0.0.1:9042', up: true }] },
      connections: 3,
      subscriptions: 2,
      throughput: { at: 1, published_per_s: 2 },
      sources: [
        { name: 'mine', state: 'running', url: 'https://user:pw@feed.example/x?token=abc', headers: { a: 'b' } },
        { name: 'theirs', state: 'standby' },
      ],
      edge: { links: [{ topic: 'demo.edge', state: 'open', url: 'http://edge/v1/edge/link/demo.edge' }] },
      admin_token: 'never',
    });
    const text = JSON.stringify(card);
    for (const secret of ['pw@', 'abc', 'never', 'headers', 'feed.example']) assert.ok(!text.includes(secret), secret);
    assert.deepEqual((card.sources as { owned: string[] }).owned, ['mine']);
    assert.deepEqual(card.edge_links, [{ topic: 'demo.edge', state: 'open' }]);
    assert.deepEqual((card.store as { nodes: unknown[] }).nodes, [
      { address: '127.0.0.1:9042', datacenter: null, up: true },
    ]);
  });

  it('caps its lists', () => {
    const sources = Array.from({ length: 500 }, (_, i) => ({ name: `s${i}`, state: 'running' }));
    const card = relayCard({ node: {}, store: {}, sources });
    assert.equal((card.sources as { owned: string[]; total: number }).owned.length, 50);
    assert.equal((card.sources as { total: number }).total, 500);
  });
});
