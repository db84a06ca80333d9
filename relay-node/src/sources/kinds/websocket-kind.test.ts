import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { type WebSocket, WebSocketServer } from 'ws';
import { memoryStore, testHub } from '../../hub/test-hub.ts';
import { createLogger } from '../../logger.ts';
import { parseDefinition } from '../definition.ts';
import { createIngest } from '../ingest.ts';
import { defineStep } from '../plugin-api.ts';
import { createScheduler } from '../scheduler.ts';
import { createSourceRuntime } from '../source-runtime.ts';
import { BUILTIN_KINDS } from './builtin-kinds.ts';
import { websocketKind } from './websocket-kind.ts';

// Generous: storing 2,000 frames of 16 KiB takes ~7 s alone here, and timed out at 10 s under load.
const waitFor = async <T>(what: string, get: () => T | undefined | Promise<T | undefined>, ms = 30_000) => {
  const deadline = Date.now() + ms;
  for (let v = await get(); ; v = await get()) {
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** A gate a middleware step waits at: publishing is as slow as the test wants. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let seen = 0;
  return { opened, open: () => open(), seen: () => seen, hit: () => (seen += 1) };
}

/**
 * An upstream on 127.0.0.1 and one WebSocket source pulling it through the real runtime, ingest,
 * hub and (in-memory) store; `onConnection` is what upstream does with each connection.
 */
async function setup(options: {
  source: Record<string, unknown>;
  onConnection: (ws: WebSocket) => void;
  deadLetterTopic?: string;
  wait: ReturnType<typeof gate>;
  failAt?: number;
}) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  wss.on('connection', options.onConnection);
  const { port } = wss.address() as { port: number };
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const log = createLogger('debug', sink);
  const store = memoryStore();
  const hub = testHub(store);
  const scheduler = createScheduler({ concurrency: 2 });
  const { wait } = options;
  const slow = defineStep({
    name: 'slow',
    kind: 'filter',
    timeout_ms: 60_000,
    run: async () => {
      const n = wait.hit();
      await wait.opened;
      if (n === options.failAt) throw new Error('poisoned');
      return true;
    },
  });
  const ingest = createIngest({
    hub,
    steps: new Map([[slow.name, slow]]),
    topicPipelines: [],
    deadLetterTopic: options.deadLetterTopic ?? 'dead.letters',
    stepTimeoutMs: 60_000,
    maxMessageBytes: 1024 * 1024,
    log,
    onDeadLetter() {},
  });
  let payloads = 0;
  const definition = parseDefinition(
    {
      name: 'feed',
      kind: 'websocket',
      url: `ws://127.0.0.1:${port}/`,
      topic: 'feed.items',
      id_path: '$.id',
      pipeline: ['slow'],
      backoff_min_ms: 60_000,
      ...options.source,
    },
    BUILTIN_KINDS,
  );
  const runtime = createSourceRuntime(definition, websocketKind, {
    scheduler,
    log,
    ingest: (r, payload) => ((payloads += 1), ingest(r, payload)),
    onError() {},
  });
  runtime.start();
  return {
    runtime,
    lines,
    payloads: () => payloads,
    stored: async () =>
      (await store.history('feed.items', { limit: 10_000 })).map((m) => (m.data as { id: number }).id),
    async close() {
      runtime.stop();
      scheduler.stop();
      for (const client of wss.clients) client.terminate();
      wss.close();
      await hub.writer.drain();
      await store.close();
    },
  };
}

describe('websocket source', () => {
  const open: { close(): Promise<void> }[] = [];
  after(async () => {
    for (const s of open) await s.close();
  });

  it('stops reading while publishing is behind, so upstream waits; nothing is lost', async () => {
    const FRAMES = 2_000;
    const pad = 'x'.repeat(16 * 1024);
    let flushed = 0;
    let upstream: WebSocket | undefined;
    const wait = gate();
    const s = await setup({
      source: { max_pending_frames: 8 },
      wait,
      onConnection(ws) {
        upstream = ws;
        for (let id = 1; id <= FRAMES; id++) ws.send(JSON.stringify({ id, pad }), () => (flushed += 1));
      },
    });
    open.push(s);
    const paused = await waitFor('reading paused', () =>
      s.lines.find((l) => l.msg === 'publishing behind upstream: reading paused'),
    );
    assert.equal(paused.pending, 8);
    // 32 MB sent; with the socket not read, upstream's kernel buffers fill and the rest waits
    // in upstream's own queue instead of in the relay.
    let last = -1;
    await waitFor('upstream to stop flushing', async () => {
      const now = flushed;
      const settled = now === last;
      last = now;
      await new Promise((r) => setTimeout(r, 100));
      return settled;
    });
    assert.ok(flushed < FRAMES, `upstream flushed ${flushed} of ${FRAMES} frames`);
    assert.ok((upstream?.bufferedAmount ?? 0) > 0);
    assert.equal(wait.seen(), 1);
    wait.open();
    // Counted first (cheap), then read from the store: reading its 32 MB every 10 ms slowed the
    // ingest it waited for past 30 s on a loaded machine. Bounds, not timings.
    await waitFor('every frame taken in', () => s.payloads() >= FRAMES || undefined, 120_000);
    const ids = await waitFor(
      'every frame stored',
      async () => {
        const stored = await s.stored();
        return stored.length === FRAMES ? stored : undefined;
      },
      60_000,
    );
    assert.deepEqual(
      ids,
      Array.from({ length: FRAMES }, (_, i) => i + 1),
    );
    assert.ok(s.lines.some((l) => l.msg === 'reading resumed'));
    assert.equal(s.runtime.state, 'connected');
  });

  it('does not publish the frames queued behind a publish that failed and dropped the connection', async () => {
    const wait = gate();
    let pongs = 0;
    const s = await setup({
      source: {},
      wait,
      // The first item's step fails and its dead letter cannot be published: a failed publish.
      deadLetterTopic: 'bad..topic',
      failAt: 1,
      onConnection(ws) {
        ws.on('pong', () => (pongs += 1));
        for (let id = 1; id <= 5; id++) ws.send(JSON.stringify({ id }));
        ws.ping(); // answered after the five frames are read
      },
    });
    open.push(s);
    await waitFor('the frames read', () => pongs > 0 && wait.seen() === 1);
    wait.open();
    await waitFor('the connection dropped', () => s.runtime.state === 'failing');
    assert.match(s.runtime.status().last_error?.message ?? '', /topic/);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(s.payloads(), 1, 'frames 2-5 of the dropped connection were not ingested');
    assert.deepEqual(await s.stored(), []);
  });
});

/** One WebSocket source at `url` on the real runtime and scheduler; each payload is counted, not stored. */
function streamSource(url: string, source: Record<string, unknown>) {
  const scheduler = createScheduler({ concurrency: 2 });
  let payloads = 0;
  const definition = parseDefinition(
    { name: 'feed', kind: 'websocket', url, topic: 'feed.items', ...source },
    BUILTIN_KINDS,
  );
  const runtime = createSourceRuntime(definition, websocketKind, {
    scheduler,
    log: createLogger('silent'),
    ingest: async () => void (payloads += 1),
    onError() {},
    random: () => 1, // each back-off its full length
  });
  runtime.start();
  return {
    runtime,
    payloads: () => payloads,
    stop() {
      runtime.stop();
      scheduler.stop();
    },
  };
}

/**
 * A bare-bones upstream on a TCP server: it completes the WebSocket handshake and then writes
 * what `afterHandshake` gives for the n-th connection (raw bytes, so it can send a broken frame).
 */
async function rawUpstream(afterHandshake: (n: number) => Buffer) {
  let connects = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    const n = ++connects;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.once('data', (request) => {
      const key = /Sec-WebSocket-Key: (.*)\r\n/i.exec(String(request))?.[1] ?? '';
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      socket.write(afterHandshake(n));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    connects: () => connects,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

describe('websocket source: drops after the connection opened', () => {
  const cleanups: (() => void)[] = [];
  after(() => {
    for (const cleanup of cleanups) cleanup();
  });

  it('reconnects after upstream sends a frame that is not valid UTF-8, and shows why', async () => {
    const good = Buffer.from('{"id":"ok"}');
    // A text frame whose two payload bytes are not UTF-8; later connections send a good frame.
    const upstream = await rawUpstream((n) =>
      n === 1 ? Buffer.from([0x81, 0x02, 0xff, 0xfe]) : Buffer.concat([Buffer.from([0x81, good.length]), good]),
    );
    cleanups.push(() => upstream.close());
    const s = streamSource(upstream.url, { backoff_min_ms: 50, heartbeat_ms: 60_000 });
    cleanups.push(() => s.stop());
    await waitFor('a second connection and its frame', () => upstream.connects() >= 2 && s.payloads() >= 1);
    const status = s.runtime.status();
    assert.match(status.last_error?.message ?? '', /UTF-8/);
    assert.equal(status.errors, 1);
    assert.equal(status.state, 'connected');
  });

  it('counts a binary frame that is not valid UTF-8 as a bad payload, instead of publishing it repaired', async () => {
    const latin1 = Buffer.from('{"name":"café"}', 'latin1');
    const good = Buffer.from('{"name":"ok"}');
    const upstream = await rawUpstream(() =>
      Buffer.concat([Buffer.from([0x82, latin1.length]), latin1, Buffer.from([0x81, good.length]), good]),
    );
    cleanups.push(() => upstream.close());
    const s = streamSource(upstream.url, { backoff_min_ms: 50, heartbeat_ms: 60_000 });
    cleanups.push(() => s.stop());
    await waitFor('the good frame', () => s.payloads() >= 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Before, the binary frame was read as UTF-8 with U+FFFD for the é, and published so.
    assert.equal(s.payloads(), 1);
    const status = s.runtime.status();
    assert.match(status.last_error?.message ?? '', /not valid UTF-8/);
    assert.equal(status.errors, 1);
    assert.equal(status.state, 'connected');
    assert.equal(upstream.connects(), 1, 'the connection stays');
  });

  it('reads a text frame that starts with a byte order mark, as a binary frame and an http answer', async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const text = Buffer.concat([bom, Buffer.from('{"id":"text"}')]);
    const binary = Buffer.concat([bom, Buffer.from('{"id":"binary"}')]);
    const upstream = await rawUpstream(() =>
      Buffer.concat([Buffer.from([0x81, text.length]), text, Buffer.from([0x82, binary.length]), binary]),
    );
    cleanups.push(() => upstream.close());
    const s = streamSource(upstream.url, { backoff_min_ms: 50, heartbeat_ms: 60_000 });
    cleanups.push(() => s.stop());
    await waitFor('both frames, or an error', () => s.payloads() + s.runtime.status().errors >= 2);
    // Before, the text frame failed as `invalid JSON frame` (its U+FEFF kept); the binary one passed.
    assert.equal(s.runtime.status().last_error, null);
    assert.equal(s.payloads(), 2);
  });

  it('backs off further each time upstream accepts and closes at once, and forgives once a connection holds', async () => {
    const FLAPS = 5;
    const connectedAt: number[] = [];
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    // An auth refusal sent as a close after the upgrade; the connection after the flaps is kept.
    wss.on('connection', (ws) => {
      connectedAt.push(Date.now());
      if (connectedAt.length <= FLAPS) ws.close(1008, 'unauthorized');
    });
    cleanups.push(() => {
      for (const client of wss.clients) client.terminate();
      wss.close();
    });
    const { port } = wss.address() as { port: number };
    const s = streamSource(`ws://127.0.0.1:${port}/`, { backoff_min_ms: 50, backoff_max_ms: 400 });
    cleanups.push(() => s.stop());
    await waitFor(
      'the connection after the flaps',
      () => connectedAt.length > FLAPS && s.runtime.state === 'connected',
    );
    const gaps = connectedAt.slice(1).map((at, i) => at - (connectedAt[i] as number));
    // 50, 100, 200, 400 ms, then capped at backoff_max_ms (random 1: no jitter off the top).
    assert.ok((gaps[3] as number) >= 350 && (gaps[4] as number) >= 350, `gaps ${gaps.join(', ')} ms`);
    assert.ok((gaps[0] as number) < 300, `gaps ${gaps.join(', ')} ms`);
    assert.equal(s.runtime.status().consecutive_failures, FLAPS);
    await waitFor(
      'failures forgiven after backoff_max_ms connected',
      () => s.runtime.status().consecutive_failures === 0,
    );
    assert.equal(connectedAt.length, FLAPS + 1);
  });
});
