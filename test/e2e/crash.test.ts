import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { history, spawnRelay, tempDir } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

describe('crash safety', () => {
  it('loses no acked message when the relay is killed with SIGKILL mid-stream', async () => {
    const dataDir = await tempDir();
    const args = ['--port', '0', '--data-dir', dataDir, '--publish-rate', '100000', '--publish-burst', '100000'];
    const relay = await spawnRelay(args);
    const publisher = await openSocket(`${relay.wsUrl}/v1/ws`);
    const acked = new Set<string>();
    publisher.ws.on('message', (raw) => {
      const frame = JSON.parse(String(raw)) as { op: string; id?: string };
      if (frame.op === 'ack' && frame.id) acked.add(frame.id);
    });
    let sent = 0;
    const pump = setInterval(() => {
      for (let i = 0; i < 20 && publisher.ws.readyState === publisher.ws.OPEN; i++) {
        publisher.send({ op: 'pub', topic: 'crash.t', data: { n: sent }, ref: `p${sent}` });
        sent += 1;
      }
    }, 2);
    while (acked.size < 500) await new Promise((r) => setTimeout(r, 5));
    relay.child.kill('SIGKILL');
    const exit = await relay.exited;
    clearInterval(pump);
    assert.equal(exit.signal, 'SIGKILL');
    assert.ok(sent > acked.size, 'some publishes were in flight when the node died');

    const restarted = await spawnRelay(args);
    try {
      const messages = await history(restarted.url, 'crash.t');
      const stored = new Set(messages.map((m) => m.id));
      const lost = [...acked].filter((id) => !stored.has(id));
      assert.deepEqual(lost, [], `${lost.length} of ${acked.size} acked messages lost`);
      assert.equal(stored.size, messages.length, 'no duplicates in history');
    } finally {
      restarted.child.kill('SIGTERM');
      await restarted.exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('shuts down gracefully on SIGTERM: exit 0, clients closed with 4000', async () => {
    const dataDir = await tempDir();
    const relay = await spawnRelay(['--port', '0', '--data-dir', dataDir]);
    const client = await openSocket(`${relay.wsUrl}/v1/ws`);
    client.send({ op: 'sub', topic: 'bye.t', ref: 's' });
    await client.next((f) => f.op === 'subscribed');
    relay.child.kill('SIGTERM');
    const [closed, exit] = await Promise.all([client.closed, relay.exited]);
    assert.equal(closed.code, 4000);
    assert.equal(exit.code, 0);
    await rm(dataDir, { recursive: true, force: true });
  });
});
