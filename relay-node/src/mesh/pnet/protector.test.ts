import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ConnectionProtector, Libp2p } from '@libp2p/interface';
import { noise } from '@libp2p/noise';
// The original implementation, kept as a devDependency only to prove wire compatibility.
import { preSharedKey } from '@libp2p/pnet';
import { tcp } from '@libp2p/tcp';
import { byteStream, multiaddrConnectionPair } from '@libp2p/utils';
import { yamux } from '@libp2p/yamux';
import { createLibp2p } from 'libp2p';
import { privateNetwork } from './protector.ts';
import { encodeSwarmKey } from './swarm-key.ts';

const ECHO = '/anode-test/echo/1.0.0';
/** Takes SINK_BYTES, then answers with their sha256. */
const SINK = '/anode-test/sink/1.0.0';
const SINK_BYTES = 4 * 1_900_000;
const KEY = randomBytes(32);
const ours = (key = KEY) => privateNetwork({ key });
const theirs = (key = KEY) => preSharedKey({ psk: new TextEncoder().encode(encodeSwarmKey(key)) });

async function node(protector: (components: never) => ConnectionProtector): Promise<Libp2p> {
  const created = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: protector,
  });
  await created.handle(ECHO, (stream) => {
    stream.addEventListener('message', (event) => stream.send(event.data));
    stream.addEventListener('remoteCloseWrite', () => void stream.close());
  });
  await created.handle(SINK, (stream) => {
    const hash = createHash('sha256');
    let received = 0;
    stream.addEventListener('message', (event) => {
      for (const chunk of event.data instanceof Uint8Array ? [event.data] : event.data) hash.update(chunk);
      received += event.data.byteLength;
      if (received === SINK_BYTES) stream.send(hash.digest());
    });
  });
  return created;
}

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** Sends `size` random bytes over a fresh stream from `from` to `to` and checks they come back. */
async function echo(from: Libp2p, to: Libp2p, size: number): Promise<void> {
  const payload = randomBytes(size);
  const stream = await from.dialProtocol(to.getMultiaddrs()[0]!, ECHO, { signal: AbortSignal.timeout(30_000) });
  const bytes = byteStream(stream);
  const [back] = await Promise.all([
    bytes.read({ bytes: size, signal: AbortSignal.timeout(30_000) }),
    (async () => {
      // Odd chunk sizes so the keystream runs across writes that do not line up with blocks.
      for (let at = 0; at < size; at += 65_519) await bytes.write(payload.subarray(at, at + 65_519));
    })(),
  ]);
  assert.equal(sha(back.subarray()), sha(payload));
  await stream.close();
}

describe('pnet protector: wire-compatible with @libp2p/pnet over real TCP', () => {
  let mine: Libp2p;
  let original: Libp2p;

  before(async () => {
    [mine, original] = await Promise.all([node(ours()), node(theirs())]);
  });
  after(async () => {
    await Promise.all([mine.stop(), original.stop()]);
  });

  it('ours dials the original, and a 3 MB echo and small ones come back intact', async () => {
    await echo(mine, original, 3 * 1024 * 1024);
    for (let i = 0; i < 50; i++) await echo(mine, original, 1 + i * 37);
  });

  it('the original dials ours, and a 3 MB echo comes back intact', async () => {
    const dialer = await node(theirs());
    try {
      await echo(dialer, mine, 3 * 1024 * 1024);
      assert.equal(dialer.getConnections(mine.peerId)[0]?.direction, 'outbound');
    } finally {
      await dialer.stop();
    }
  });

  it('two of ours talk to each other', async () => {
    const other = await node(ours());
    try {
      await echo(other, mine, 1024 * 1024 + 3);
    } finally {
      await other.stop();
    }
  });

  it('carries what crashed the WASM cipher: 16 x 1.9 MB on four parallel streams, then 3,000 small round trips', async () => {
    // With @libp2p/pnet on both ends this exits with "RangeError: WebAssembly.Memory.grow()" after
    // the large writes: one write flushed after back-pressure is over the WASM memory's initial
    // size, and from then on every update by another connection's cipher grows it again.
    const other = await node(ours());
    try {
      const big = randomBytes(SINK_BYTES / 4);
      const expected = createHash('sha256').update(big).update(big).update(big).update(big).digest('hex');
      await Promise.all(
        [0, 1, 2, 3].map(async () => {
          const sink = await other.dialProtocol(mine.getMultiaddrs()[0]!, SINK, {
            signal: AbortSignal.timeout(30_000),
          });
          const bytes = byteStream(sink);
          for (let i = 0; i < 4; i++) await bytes.write(big);
          const digest = await bytes.read({ bytes: 32, signal: AbortSignal.timeout(120_000) });
          assert.equal(Buffer.from(digest.subarray()).toString('hex'), expected);
          await sink.close();
        }),
      );
      const stream = byteStream(await other.dialProtocol(mine.getMultiaddrs()[0]!, ECHO));
      for (let i = 0; i < 3_000; i++) {
        const small = randomBytes(100);
        await stream.write(small);
        assert.deepEqual(Buffer.from((await stream.read({ bytes: 100 })).subarray()), small);
      }
    } finally {
      await other.stop();
    }
  });

  it('a node with another key cannot connect, ours or theirs', async () => {
    for (const stranger of [await node(ours(randomBytes(32))), await node(theirs(randomBytes(32)))]) {
      try {
        await assert.rejects(stranger.dial(mine.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(1_500) }));
        await assert.rejects(stranger.dial(original.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(1_500) }));
      } finally {
        await stranger.stop();
      }
    }
  });

  it('a node without a protector cannot connect', async () => {
    const open = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
    });
    try {
      await assert.rejects(open.dial(mine.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(1_500) }));
    } finally {
      await open.stop();
    }
  });
});

describe('pnet protector: state', () => {
  it('keeps nothing once a connection is gone: every protected connection is collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let collected = 0;
    const registry = new FinalizationRegistry(() => collected++);
    const protector = ours()();
    const COUNT = 100;
    // In a function of its own, so that no stack slot keeps the last connection alive.
    const useOne = async (i: number) => {
      const [outbound, inbound] = multiaddrConnectionPair();
      const [a, b] = await Promise.all([protector.protect(outbound), protector.protect(inbound)]);
      const reader = byteStream(b);
      const [got] = await Promise.all([reader.read({ bytes: 1000 }), byteStream(a).write(randomBytes(1000))]);
      assert.equal(got.byteLength, 1000);
      registry.register(reader.unwrap(), i);
      registry.register(a, i);
      await Promise.all([a.close(), b.close()]).catch(() => {});
    };
    for (let i = 0; i < COUNT; i++) await useOne(i);
    await tick();
    for (let round = 0; round < 50 && collected < 2 * COUNT; round++) {
      gc();
      await tick();
    }
    assert.equal(collected, 2 * COUNT);
  });
});
