import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_TOPIC_STATS } from './hub.ts';
import { memoryStore, testHub } from './test-hub.ts';

describe('hub status', () => {
  it('keeps counts for the most recently published topics only, so topic churn stays bounded', async () => {
    const store = memoryStore();
    const hub = testHub(store);
    const publish = (topic: string) => hub.publish(topic, [{ data: 1 }], { via: 'source', source: 's' });
    await publish('t.first');
    await Promise.all(Array.from({ length: MAX_TOPIC_STATS - 1 }, (_, i) => publish(`t.n${i}`)));
    await publish('t.first'); // published again: now the most recent
    await publish('t.last'); // one too many: the least recently published goes
    const topics = hub.status().topics;
    assert.ok(topics.length <= MAX_TOPIC_STATS && topics.length >= MAX_TOPIC_STATS * 0.9, `${topics.length} topics`);
    const names = new Set(topics.map((t) => t.topic));
    assert.ok(names.has('t.first') && names.has('t.last'));
    assert.ok(!names.has('t.n0'), 'the least recently published topic was forgotten');
    assert.ok(names.has(`t.n${MAX_TOPIC_STATS - 2}`), 'a recently published one is kept');
    assert.equal(topics.find((t) => t.topic === 't.first')?.published, 2, 'a kept topic keeps its counts');
    await store.close();
  });
});
