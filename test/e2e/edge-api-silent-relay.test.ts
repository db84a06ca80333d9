import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { QUICK_CLOSE } from '../../worker/test-support/edge-runtime.ts';
import { type EdgeRuntime, startEdge } from '../helpers/edge.ts';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * A pattern subscription at the edge lives on the edge's socket to a relay. A relay gone silent
 * (a partition, its host lost without closing its connections: no FIN, no close frame) left that
 * socket open with nothing arriving on it, and the client got nothing more, with no error, its
 * pings answered, for as long as it stayed connected. A relay's own subscriptions cannot go
 * silent that way. The partition is a TCP forwarder between the edge and the relay that, once
 * silenced, keeps both connections open and drops every byte either way.
 */
interface SilenceableForward {
  port: number;
  silence(): void;
  close(): Promise<void>;
}

async function silenceableForward(targetPort: number): Promise<SilenceableForward> {
  let silent = false;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    open.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (chunk) => void (silent || upstream.write(chunk)));
    upstream.on('data', (chunk) => void (silent || client.write(chunk)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    silence: () => void (silent = true),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const publish = async (url: string, topic: string, data: unknown) => {
  const response = await fetch(`${url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ data }),
  });
  assert.equal(response.status, 202);
};

describe('edge API: a pattern subscription whose relay goes silent', () => {
  let relay: TestRelay;
  let forward: SilenceableForward;
  let edge: EdgeRuntime;
  before(async () => {
    relay = await startRelay();
    forward = await silenceableForward(Number(new URL(relay.url).port));
    // Patterns go through RELAY_URLS; no link is needed for them.
    edge = await startEdge({ RELAY_URLS: `http://127.0.0.1:${forward.port}`, RELAY_PING_MS: '1000' });
  });
  after(async () => {
    await edge?.stop();
    await forward?.close();
    await relay?.stop();
  });

  it('closes the client 4000 (reconnect and resume) instead of leaving it subscribed to nothing', async () => {
    const client = await openSocket(`${edge.wsUrl}/v1/ws`, QUICK_CLOSE);
    try {
      client.send({ op: 'sub', topic: 'silent.*', ref: 's' });
      await client.next((f) => f.op === 'subscribed' && f.ref === 's', 15_000);
      await publish(relay.url, 'silent.a', 'before');
      await client.next((f) => f.op === 'msg' && f.data === 'before', 15_000);

      forward.silence();
      await publish(relay.url, 'silent.a', 'during');
      const closed = await Promise.race([
        client.closed,
        new Promise<'still open'>((resolve) => setTimeout(() => resolve('still open'), 20_000).unref()),
      ]);
      assert.notEqual(closed, 'still open', 'the client stayed subscribed to a relay that answers nothing');
      assert.equal(typeof closed === 'string' ? closed : closed.code, 4000);
    } finally {
      client.close();
    }
  });
});
