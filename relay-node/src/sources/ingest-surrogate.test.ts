import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHybridClock, type Envelope } from '@anode/shared';
import { createHub } from '../hub/hub.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { parseDefinition } from './definition.ts';
import { createIngest } from './ingest.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';
import { createScheduler } from './scheduler.ts';
import { createSourceRuntime } from './source-runtime.ts';

const log = createLogger('silent');

/** A real hub and ingest on the in-memory store; the source is never polled (payloads handed in). */
function setup(mapping: Record<string, unknown>) {
  const store = memoryStore();
  const hub = createHub({
    store,
    clock: createHybridClock('nodelocal0'),
    metrics: createMetrics(),
    log,
    maxMessageBytes: 65536,
  });
  const scheduler = createScheduler({ concurrency: 1 });
  const ingest = createIngest({
    hub,
    steps: new Map(),
    topicPipelines: [],
    deadLetterTopic: 'sources.dead',
    stepTimeoutMs: 1000,
    maxMessageBytes: 65536,
    log,
    onDeadLetter() {},
  });
  const definition = parseDefinition(
    { name: 'src', kind: 'http', url: 'http://127.0.0.1:1/x', topic: 't.items', ...mapping },
    BUILTIN_KINDS,
  );
  const runtime = createSourceRuntime(definition, BUILTIN_KINDS.get('http')!, {
    scheduler,
    log,
    ingest: (r, p) => ingest(r, p),
    onError() {},
  });
  return {
    ingest: (payload: unknown) => ingest(runtime, payload),
    stored: async (topic: string) => (await store.history(topic, { limit: 100 })) as Envelope[],
    async close() {
      scheduler.stop();
      await hub.writer.drain();
      await store.close();
    },
  };
}

describe('source items holding text that is not well-formed Unicode (a lone surrogate from upstream JSON)', () => {
  it('an item id with a lone surrogate is stored under an id of its own; the payload is not failed', async () => {
    const s = setup({ items_path: '$[*]', id_path: '$.id' });
    try {
      await s.ingest(JSON.parse('[{"id":"good1"},{"id":"x\\ud800"},{"id":"x\\ufffd"},{"id":"good2"}]'));
      const stored = await s.stored('t.items');
      assert.deepEqual(
        stored.map((m) => (m.data as { id: string }).id),
        ['good1', 'x\ud800', 'x\ufffd', 'good2'],
      );
      assert.equal(new Set(stored.map((m) => m.id)).size, 4);
    } finally {
      await s.close();
    }
  });

  it('an item whose topic_path topic holds one goes to the dead letter topic; the others are stored', async () => {
    const s = setup({ items_path: '$[*]', id_path: '$.id', topic_path: '$.t' });
    try {
      await s.ingest(
        JSON.parse('[{"id":"good1","t":"t.items"},{"id":"b","t":"bad\\ud800"},{"id":"good2","t":"t.items"}]'),
      );
      assert.deepEqual(
        (await s.stored('t.items')).map((m) => (m.data as { id: string }).id),
        ['good1', 'good2'],
      );
      assert.equal((await s.stored('sources.dead')).length, 1);
    } finally {
      await s.close();
    }
  });
});
