import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { createHybridClock, type MessageStore } from '@anode/shared';
import { createCluster } from '../cluster.ts';
import { loadConfig } from '../config.ts';
import { createWatchers } from '../dashboard/watchers.ts';
import { createHub } from '../hub/hub.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';
import type { SourceKind } from './source-kind.ts';
import { sourcesComponent } from './sources-component.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// A middleware step held until the test lets it go (a plugin awaiting an enrichment service).
const HELD_STEP = `
let release;
let enter;
export const entered = new Promise((r) => (enter = r));
const held = new Promise((r) => (release = r));
export const releaseHeld = () => release();
export default { name: 'held', kind: 'filter', run: async () => (enter(), await held, true) };
`;

// A plugin kind whose every poll emits the same item (published once: dedup).
const oneItem: SourceKind = {
  ...BUILTIN_KINDS.get('http')!,
  kind: 'one-item',
  create: (_definition, io) => ({ mode: 'poll', intervalMs: 20, run: () => io.emit([{ id: 'one' }]), close() {} }),
};

describe('sources component: a stop waits for the publishes in flight', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  /** A component with one `one-item` source through the held step, over a store that records appends. */
  const setUp = async (shutdownGraceMs?: number) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sources-stop-'));
    dirs.push(dir);
    const plugins = join(dir, 'plugins');
    await mkdir(plugins);
    const file = resolve(join(plugins, 'held.mjs'));
    await writeFile(file, HELD_STEP);
    // The very module the component loads (same URL): its deferred is the step's.
    const step = (await import(pathToFileURL(file).href)) as { entered: Promise<void>; releaseHeld(): void };
    const inner = memoryStore();
    const stored: string[] = [];
    const store: MessageStore = {
      ...inner,
      append: async (messages, options) => {
        const results = await inner.append(messages, options);
        stored.push(...messages.map((m) => m.topic));
        return results;
      },
    };
    const log = createLogger('silent');
    const metrics = createMetrics();
    const hub = createHub({ store, clock: createHybridClock('nodelocal0'), metrics, log, maxMessageBytes: 1 << 20 });
    const config = loadConfig({ flags: { port: '0', 'data-dir': dir, 'log-level': 'silent' }, env: {} });
    config.plugins_dir = plugins;
    config.source_step_timeout_ms = 30_000;
    if (shutdownGraceMs !== undefined) config.shutdown_grace_ms = shutdownGraceMs;
    config.sources = [
      {
        name: 'feed',
        kind: 'one-item',
        url: 'http://127.0.0.1:9/',
        topic: 't.feed',
        items_path: '$[*]',
        id_path: '$.id',
        pipeline: ['held'],
      },
    ];
    const component = await sourcesComponent({ kinds: [oneItem] })({
      nodeId: 'nodelocal0',
      clock: createHybridClock('nodelocal0'),
      config,
      hub,
      store,
      metrics,
      log,
      cluster: createCluster('nodelocal0'),
      status: async () => ({}),
      watchers: createWatchers(),
    });
    assert.ok(component);
    await component.start();
    await step.entered; // the payload is in the step, its publish running in the source's gate
    return { component, step, stored, hub };
  };

  it('publishes a payload still in a middleware step before stop() resolves', async () => {
    const { component, step, stored, hub } = await setUp();
    let storedAtStop: string[] | undefined;
    const stopping = component.stop().then(() => (storedAtStop = [...stored]));
    await sleep(50);
    step.releaseHeld();
    await stopping;
    await hub.writer.drain();
    // Before, stop() resolved at once: the node then drained nothing and went on to stop the mesh
    // and close the store, and the payload's publish failed there, lost.
    assert.deepEqual(storedAtStop, ['t.feed']);
  });

  it('waits at most a quarter of shutdown_grace_ms for a publish that does not end', async () => {
    const { component, step, hub } = await setUp(800);
    const started = Date.now();
    await component.stop();
    const waited = Date.now() - started;
    step.releaseHeld();
    await hub.writer.drain();
    assert.ok(waited >= 150 && waited < 1_000, `stop() took ${waited} ms`);
  });
});
