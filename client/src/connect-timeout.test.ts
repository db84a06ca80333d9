import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AnodeError } from '../../shared/src/errors.ts';
import { createClient } from './client.ts';

/**
 * connectTimeoutMs: how long a subscription not live yet waits for a connection. The real relay
 * and `ws` are imported by paths the type checker does not follow: the client is type-checked
 * without Node's types (it must run in browsers), and they need them.
 */
interface RelayHelpers {
  tempDir(): Promise<string>;
  startRelay(
    flags?: Record<string, string>,
    options?: { dataDir?: string },
  ): Promise<{ url: string; stop(): Promise<void> }>;
}
const relayHelpers = '../../test/helpers/relay.ts';
const { startRelay, tempDir } = (await import(relayHelpers)) as RelayHelpers;

interface TestSocket {
  on(event: 'message', listener: (data: unknown) => void): void;
  terminate(): void;
}
interface TestServer {
  on(event: 'listening', listener: () => void): void;
  on(event: 'connection', listener: (socket: TestSocket) => void): void;
  address(): { port: number };
  close(): void;
}
const wsPackage = 'ws';
const { WebSocketServer } = (await import(wsPackage)) as {
  WebSocketServer: new (options: { port: number; host: string }) => TestServer;
};

async function until(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** How a promise settled within `ms`: 'resolved', the error it rejected with, or 'pending'. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const pending = new Promise((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  try {
    return await Promise.race([
      promise.then(
        () => 'resolved',
        (error: unknown) => error,
      ),
      pending,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A relay's port, bound then closed (nothing listens on it), and its data folder to start it there later. */
async function closedPort(): Promise<{ url: string; port: string; dataDir: string }> {
  const dataDir = await tempDir();
  const relay = await startRelay({}, { dataDir });
  await relay.stop();
  return { url: relay.url, port: new URL(relay.url).port, dataDir };
}

test('with connectTimeoutMs, a subscription made while no node listens rejects with unavailable naming the URL, and is dropped while the client goes on reconnecting', async () => {
  const { url, port, dataDir } = await closedPort();
  const client = createClient({ url, connectTimeoutMs: 300, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  client.on('error', () => {}); // each failed attempt
  let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
  try {
    const dropped: unknown[] = [];
    const started = Date.now();
    const error = await settledWithin(client.subscribe('ct.t', (m) => dropped.push(m.data)).ready, 5_000);
    const tookMs = Date.now() - started;
    assert.ok(error instanceof AnodeError, `sub.ready: ${String(error)}`);
    assert.equal(error.code, 'unavailable');
    assert.match(error.message, new RegExp(`no connection opened within 300 ms to ws://127\\.0\\.0\\.1:${port}/v1/ws`));
    assert.match(error.message, /check the URL .*token.*node is up/);
    assert.ok(tookMs >= 290 && tookMs < 2_000, `rejected after ${tookMs} ms`);

    // The client goes on reconnecting: a node that comes up later serves later calls, and not the
    // dropped subscription (a later publish to its topic is not handed to it).
    relay = await startRelay({ port }, { dataDir });
    await until(() => client.connected, 'a connection to the node started since');
    const later: unknown[] = [];
    await client.subscribe('ct.>', (m) => later.push(m.data)).ready;
    await client.publish('ct.t', 'after');
    await until(() => later.length === 1, 'the publish at the later subscription');
    await client.ping();
    assert.deepEqual(dropped, []);
  } finally {
    await client.close();
    await relay?.stop();
  }
});

test('without connectTimeoutMs (or with one that is no number of ms above 0) a subscription waits for a connection until close()', async () => {
  const { url } = await closedPort();
  const clients = [undefined, 0, Number.NaN, null, -1, 'soon'].map((given) => {
    const client = createClient({ url, connectTimeoutMs: given as unknown as number, reconnect: { maxDelayMs: 100 } });
    client.on('error', () => {});
    return { given, client, sub: client.subscribe('cw.t') };
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 800));
    for (const { given, sub } of clients) {
      assert.equal(await settledWithin(sub.ready, 0), 'pending', `connectTimeoutMs ${String(given)}`);
    }
  } finally {
    await Promise.all(clients.map(({ client }) => client.close()));
  }
  for (const { given, sub } of clients) {
    await assert.rejects(sub.ready, { code: 'unavailable', message: 'client is closed' }, String(given));
  }
});

test('with connectTimeoutMs, a node that comes up before it passes serves the subscription, which stays once that time has passed', async () => {
  const { url, port, dataDir } = await closedPort();
  const client = createClient({ url, connectTimeoutMs: 2_000, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  client.on('error', () => {});
  let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
  try {
    const received: unknown[] = [];
    const started = Date.now();
    const sub = client.subscribe('cu.t', (m) => received.push(m.data));
    await new Promise((resolve) => setTimeout(resolve, 200));
    relay = await startRelay({ port }, { dataDir });
    assert.equal(await settledWithin(sub.ready, 1_500), 'resolved');
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + 2_300 - Date.now())));
    await client.publish('cu.t', 'after the timeout would have passed');
    await until(() => received.length === 1, 'the publish at the subscription');
    assert.deepEqual(received, ['after the timeout would have passed']);
  } finally {
    await client.close();
    await relay?.stop();
  }
});

test('connectTimeoutMs leaves alone a subscription that was live when the connection dropped: it resumes on reconnect', async () => {
  const dataDir = await tempDir();
  let relay = await startRelay({}, { dataDir });
  const port = new URL(relay.url).port;
  const client = createClient({
    url: relay.url,
    connectTimeoutMs: 200,
    reconnect: { initialDelayMs: 50, maxDelayMs: 100 },
  });
  client.on('error', () => {});
  let other: ReturnType<typeof createClient> | undefined;
  try {
    const received: unknown[] = [];
    await client.subscribe('cl.t', (m) => received.push(m.data)).ready;
    await relay.stop();
    await new Promise((resolve) => setTimeout(resolve, 700)); // down well past connectTimeoutMs
    relay = await startRelay({ port }, { dataDir });
    await until(() => client.connected, 'the reconnect');
    other = createClient({ url: relay.url });
    await other.publish('cl.t', 'after the drop');
    await until(() => received.length === 1, 'the publish at the resumed subscription');
  } finally {
    await other?.close();
    await client.close();
    await relay.stop();
  }
});

test('close() while a subscription waits for a connection under connectTimeoutMs leaves no timer that keeps the process alive', async () => {
  const { process } = globalThis as unknown as { process: { getActiveResourcesInfo(): string[] } };
  const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
  const before = timers();
  // Never dialled (the token function never answers): the subscription waits for a connection.
  const client = createClient({
    url: 'ws://127.0.0.1:9',
    token: () => new Promise<string>(() => {}),
    connectTimeoutMs: 60_000,
    pingIntervalMs: false,
  });
  const sub = client.subscribe('cc.t');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(timers() > before, 'the wait for a connection runs');
  await client.close();
  await new Promise((resolve) => setTimeout(resolve, 0));
  await assert.rejects(sub.ready, { code: 'unavailable', message: 'client is closed' });
  assert.equal(timers(), before, 'the connectTimeoutMs timer ended with close()');
});

test('a subscription dropped by connectTimeoutMs is said by an error event naming its topic, the error its ready rejects with; with no error listener nothing throws', async () => {
  const { url } = await closedPort();
  const options = { url, connectTimeoutMs: 300, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } };
  const client = createClient(options);
  const errors: AnodeError[] = [];
  client.on('error', (error) => errors.push(error));
  // An app that added no `error` listener: the event is not thrown (as for every other error
  // event), which would end this process from the timer as an uncaught exception.
  const unheard = createClient(options);
  try {
    const sub = client.subscribe('ce.t');
    const other = unheard.subscribe('ce.u');
    const error = await settledWithin(sub.ready, 5_000);
    assert.ok(error instanceof AnodeError, `sub.ready: ${String(error)}`);
    // As a subscription the node refuses (`forbidden`, `cursor_expired`) is said.
    const said = errors.filter((event) => event.message.includes('ce.t'));
    assert.equal(said.length, 1, `error events: ${errors.map((event) => event.message).join(' | ')}`);
    assert.equal(said[0], error, 'the event is the error sub.ready rejected with');
    assert.equal(said[0]?.code, 'unavailable');
    assert.match(said[0]?.message ?? '', /no connection opened within 300 ms .*the subscription to ce\.t is dropped/);
    assert.ok(
      errors.some((event) => event.message.startsWith('cannot open a WebSocket')),
      'the failed attempts emit their own errors as before',
    );
    await assert.rejects(other.ready, { code: 'unavailable', message: /subscription to ce\.u is dropped/ });
  } finally {
    await client.close();
    await unheard.close();
  }
});

test('the connectTimeoutMs clock starts again when the connection a sub went out on is cut before the answer: the subscription is dropped that long after the cut', async () => {
  const timeoutMs = 1_000;
  // Longer than connectTimeoutMs: a clock counting from the subscribe would drop it at the cut.
  const holdMs = 1_500;
  // A test double for a node that takes the `sub`, never answers it, and goes down: nothing
  // listens on its port after the cut, so every reconnect fails.
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => server.on('listening', resolve));
  let listening = true;
  let cutAt: number | undefined;
  const subs: string[] = [];
  server.on('connection', (socket) => {
    socket.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { op?: string; topic?: string };
      if (frame.op !== 'sub') return;
      subs.push(String(frame.topic));
      setTimeout(() => {
        server.close();
        listening = false;
        cutAt = Date.now();
        socket.terminate();
      }, holdMs);
    });
  });
  const client = createClient({
    url: `ws://127.0.0.1:${server.address().port}`,
    connectTimeoutMs: timeoutMs,
    reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
  });
  client.on('error', () => {}); // each failed attempt, and the drop
  try {
    const sub = client.subscribe('cr.t');
    const error = await settledWithin(sub.ready, holdMs + timeoutMs + 8_000);
    const droppedAt = Date.now();
    assert.ok(error instanceof AnodeError, `sub.ready: ${String(error)}`);
    assert.equal(error.code, 'unavailable');
    assert.match(error.message, /no connection opened within 1000 ms .*subscription to cr\.t is dropped/);
    assert.deepEqual(subs, ['cr.t'], 'the sub went out once, on the connection that was cut');
    assert.ok(cutAt !== undefined, 'the connection was cut');
    // Not before connectTimeoutMs from the cut (the clock starts when the client sees the close,
    // just after it; a timer may fire a millisecond early), and not much later: it did run again.
    const afterCutMs = droppedAt - cutAt;
    assert.ok(afterCutMs >= timeoutMs - 20, `dropped ${afterCutMs} ms after the cut`);
    assert.ok(afterCutMs < timeoutMs + 5_000, `dropped ${afterCutMs} ms after the cut`);
  } finally {
    await client.close();
    if (listening) server.close();
  }
});
