import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { MessageStore } from '@anode/shared';
import { LEASE_MS } from './clock-lease.ts';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import type { Component } from './component.ts';
import { createRelayNode } from './node.ts';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function relayConfig(extra: Record<string, unknown> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'anode-node-'));
  dirs.push(dir);
  const config = { ...loadConfig({ flags: { port: '0', host: '127.0.0.1', 'data-dir': dir }, env: {} }), ...extra };
  return { config, lease: () => readFile(join(dir, 'clock-lease'), 'utf8') };
}

/** A store that records its close and fails it when told to. */
function watched(failClose: boolean) {
  const state = { closed: 0 };
  const wrapStore = (inner: MessageStore): MessageStore => ({
    ...inner,
    async close() {
      state.closed += 1;
      await inner.close();
      if (failClose) throw new Error('close failed');
    },
  });
  return { state, wrapStore };
}

// Past the time a running lease is renewed at (half a lease after it was written).
const renewalDue = () => new Promise((resolve) => setTimeout(resolve, LEASE_MS / 2 + 1_000));

describe('relay node: nothing writes its data folder once its lock is released', { concurrency: true }, () => {
  it('after an assembly that fails (a missing jwt_public_keys file): the lease stops, the store closes', async () => {
    const { config, lease } = await relayConfig({ jwt_public_keys: ['/nonexistent/anode-key.pem'] });
    const { state, wrapStore } = watched(false);
    await assert.rejects(createRelayNode(config, createLogger('silent'), { wrapStore }), /jwt_public_keys/);
    const written = await lease();
    await renewalDue();
    assert.equal(await lease(), written, 'clock-lease was written after the failed assembly');
    assert.equal(state.closed, 1, 'the store was closed');
  });

  it('after a stop whose store close fails: the lease stops anyway', async () => {
    const { config, lease } = await relayConfig();
    const { state, wrapStore } = watched(true);
    const node = await createRelayNode(config, createLogger('silent'), { wrapStore });
    await node.start();
    await assert.rejects(node.stop(), /close failed/);
    assert.equal(state.closed, 1);
    const written = await lease();
    await renewalDue();
    assert.equal(await lease(), written, 'clock-lease was written after the stop');
  });

  it('after a stop whose first-stopped component fails: later components stop, the store closes, the lease stops', async () => {
    const { config, lease } = await relayConfig();
    const { state, wrapStore } = watched(false);
    const stopped: string[] = [];
    const wrapComponent = (component: Component): Component => ({
      ...component,
      async stop() {
        stopped.push(component.name);
        await component.stop();
        if (component.name === 'dashboard') throw new Error('flush failed');
      },
    });
    const node = await createRelayNode(config, createLogger('silent'), { wrapStore, wrapComponent });
    await node.start();
    await assert.rejects(node.stop(), /flush failed/);
    assert.deepEqual(stopped, ['dashboard', 'sources'], 'dashboard, stopped first, fails; sources still stops');
    assert.equal(state.closed, 1, 'the store was closed');
    const written = await lease();
    await renewalDue();
    assert.equal(await lease(), written, 'clock-lease was written after the stop');
  });
});
