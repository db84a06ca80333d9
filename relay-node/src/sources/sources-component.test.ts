import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createHybridClock, type MessageStore } from '@anode/shared';
import { createCluster } from '../cluster.ts';
import { loadConfig } from '../config.ts';
import { createWatchers } from '../dashboard/watchers.ts';
import { createHub } from '../hub/hub.ts';
import { memoryStore } from '../hub/test-hub.ts';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { createRelayNode } from '../node.ts';
import { createSourcesComponent } from './sources-component.ts';
import { versionTime } from './source-store.ts';

const TOKEN = 'admin-token-for-the-unit-test-0123456789';

const waitFor = async <T>(what: string, get: () => Promise<T | undefined>, ms = 10_000) => {
  const deadline = Date.now() + ms;
  for (let v = await get(); ; v = await get()) {
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('sources component: metrics of deleted sources', () => {
  const upstream = createServer((request, response) => {
    // Each source's first poll fails; later ones give an item and one with a ts a day ahead.
    const seen = (hits.get(request.url ?? '') ?? 0) + 1;
    hits.set(request.url ?? '', seen);
    if (seen === 1) return void response.writeHead(500).end();
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify([{ id: 'now' }, { id: 'ahead', ts: Date.now() + 86_400_000 }]));
  });
  const hits = new Map<string, number>();
  let dir: string;
  let node: Awaited<ReturnType<typeof createRelayNode>>;
  let url: string;
  let feed: string;
  const admin = (method: string, path: string, body?: unknown) =>
    fetch(`${url}/v1/admin/sources${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const metrics = async () => (await fetch(`${url}/metrics`)).text();
  const series = (text: string, source: string) =>
    text.split('\n').filter((line) => line.startsWith('anode_source_') && line.includes(`source="${source}"`));
  const counters = (text: string, source: string) =>
    series(text, source)
      .filter((line) => /_total\{/.test(line))
      .map((line) => line.split('{')[0])
      .sort();

  before(async () => {
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    feed = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    dir = await mkdtemp(join(tmpdir(), 'anode-sources-unit-'));
    const config = loadConfig({
      flags: { port: '0', 'data-dir': dir, 'log-level': 'silent', 'admin-token': TOKEN },
      env: {},
    });
    node = await createRelayNode(config, createLogger('silent'));
    ({ url } = await node.start());
  });
  after(async () => {
    await node?.stop();
    upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('removes a deleted source’s series from /metrics, and keeps those of a restarted one', async () => {
    const source = (name: string) => ({
      name,
      kind: 'http',
      url: `${feed}/${name}`,
      interval_ms: 50,
      backoff_max_ms: 100,
      topic: `m.${name}`,
      items_path: '$[*]',
      id_path: '$.id',
      ts_path: '$.ts',
    });
    for (const name of ['gone', 'kept']) assert.equal((await admin('POST', '', source(name))).status, 201);
    const all = ['anode_source_dead_letters_total', 'anode_source_errors_total', 'anode_source_items_total'];
    const before = await waitFor('every counter of both sources', async () => {
      const text = await metrics();
      return ['gone', 'kept'].every((name) => counters(text, name).join() === all.join()) ? text : undefined;
    });
    assert.ok(series(before, 'gone').length > all.length);

    assert.equal((await admin('PATCH', '/kept', { interval_ms: 60 })).status, 200);
    assert.equal((await admin('DELETE', '/gone')).status, 200);
    const text = await metrics();
    assert.deepEqual(series(text, 'gone'), []);
    assert.deepEqual(counters(text, 'kept'), all);
  });
});

describe('sources component: the admin API refuses a definition that could never run', () => {
  let dir: string;
  let node: Awaited<ReturnType<typeof createRelayNode>>;
  let url: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-sources-unit-'));
    const flags = { port: '0', 'data-dir': dir, 'log-level': 'silent', 'admin-token': TOKEN };
    node = await createRelayNode(loadConfig({ flags, env: {} }), createLogger('silent'));
    ({ url } = await node.start());
  });
  after(async () => {
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 400 naming the field, on create and on update', async () => {
    const send = async (method: string, path: string, body: unknown) => {
      const response = await fetch(`${url}/v1/admin/sources${path}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as { error?: { message: string } } };
    };
    const source = { name: 'bad', kind: 'http', url: 'http://127.0.0.1:9/x', topic: 't.bad', paused: true };
    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ timeout_ms: 3_000_000_000 }, /^source bad: timeout_ms: at most 2147483647/],
      [{ body: { q: 1 } }, /^source bad: body: a GET request has no body/],
      [{ method: 'HEAD' }, /^source bad: method: /],
      [{ headers: { 'bad name': 'x' } }, /^source bad: headers\.bad name: /],
      [{ items_path: '$.data[?(@.x >)]' }, /^source bad: items_path: not a valid JSONPath/],
    ];
    for (const [extra, message] of refusals) {
      const answer = await send('POST', '', { ...source, ...extra });
      assert.equal(answer.status, 400, JSON.stringify(extra));
      assert.match(answer.body.error?.message ?? '', message);
    }
    assert.equal((await send('POST', '', source)).status, 201);
    const patched = await send('PATCH', '/bad', { interval_ms: 2 ** 31 });
    assert.equal(patched.status, 400);
    assert.match(patched.body.error?.message ?? '', /^source bad: interval_ms: at most 2147483647/);
  });
});

describe('sources component: admin changes order after the last run’s, whatever the wall clock', () => {
  let dir: string;
  let node: Awaited<ReturnType<typeof createRelayNode>> | undefined;
  after(async () => {
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('stamps a change with the leased clock, past a last run whose wall clock was ahead', async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-sources-unit-'));
    // The last run leased two minutes past today's wall clock: the wall clock has stepped back.
    const leased = Date.now() + 120_000;
    await writeFile(join(dir, 'clock-lease'), `${leased}\n`, { mode: 0o600 });
    const flags = { port: '0', 'data-dir': dir, 'log-level': 'silent', 'admin-token': TOKEN };
    node = await createRelayNode(loadConfig({ flags, env: {} }), createLogger('silent'));
    const { url } = await node.start();
    const made = await fetch(`${url}/v1/admin/sources`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'later',
        kind: 'http',
        url: 'http://127.0.0.1:1/x',
        topic: 't.later',
        paused: true,
      }),
    });
    assert.equal(made.status, 201);
    const text = await readFile(join(dir, 'sources.json'), 'utf8').catch(() => '');
    const log = await readFile(join(dir, 'sources.log'), 'utf8').catch(() => '');
    const version = /"version":"([0-9a-f]{16}-[^"]+)"/.exec(log + text)?.[1] ?? /"later":"([^"]+)"/.exec(text)?.[1];
    assert.ok(version, `no version for the change in ${text}${log}`);
    assert.ok(versionTime(version) >= leased, `${version} was minted before the last run's lease`);
  });
});

describe('sources component: counters when the store fails part of a payload', () => {
  const upstream = createServer((_request, response) => {
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify(Array.from({ length: 1_000 }, (_, id) => ({ id }))));
  });
  let dir: string;
  after(async () => {
    upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('counts in anode_source_items_total the items of chunks stored before a later one failed', async () => {
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    dir = await mkdtemp(join(tmpdir(), 'anode-sources-unit-'));
    const inner = memoryStore();
    // The payload is two writes of 500: the second fails once, and the retry stores it (the
    // first 500 again, already stored, so not new).
    let appends = 0;
    const store: MessageStore = {
      ...inner,
      append: (messages, options) =>
        ++appends === 2 ? Promise.reject(new Error('store hiccup (test double)')) : inner.append(messages, options),
    };
    const log = createLogger('silent');
    const metrics = createMetrics();
    const hub = createHub({ store, clock: createHybridClock('nodelocal0'), metrics, log, maxMessageBytes: 1 << 20 });
    const config = loadConfig({ flags: { port: '0', 'data-dir': dir, 'log-level': 'silent' }, env: {} });
    config.sources = [
      {
        name: 'feed',
        kind: 'http',
        url: `http://127.0.0.1:${(upstream.address() as { port: number }).port}/`,
        interval_ms: 50,
        backoff_min_ms: 10,
        backoff_max_ms: 50,
        topic: 't.feed',
        items_path: '$[*]',
        id_path: '$.id',
      },
    ];
    const component = await createSourcesComponent({
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
    await component?.start?.();
    try {
      const items = () => (component?.status?.() as { sources: { items: number; errors: number }[] }).sources[0];
      await waitFor('the retry', async () => ((items()?.items ?? 0) === 1_000 ? true : undefined));
      const text = await metrics.registry.metrics();
      const total = /^anode_source_items_total\{source="feed"\} (\d+)$/m.exec(text)?.[1];
      assert.equal(items()?.errors, 1);
      assert.equal(Number(total), 1_000);
    } finally {
      await component?.stop?.();
      await hub.writer.drain();
    }
  });
});

describe('sources component: publishes given up on, in /metrics', () => {
  const upstream = createServer((_request, response) => {
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify([{ id: 'one' }]));
  });
  let dir: string;
  after(async () => {
    upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('counts them in anode_source_abandoned_publishes_total by stage, as the status counts them', async () => {
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    dir = await mkdtemp(join(tmpdir(), 'anode-sources-unit-'));
    const inner = memoryStore();
    // A test double: the first append hangs until refused (a store that stopped answering, then failed).
    let refuse: (error: Error) => void = () => {};
    let appends = 0;
    const store: MessageStore = {
      ...inner,
      append: (messages, options) =>
        ++appends === 1 ? new Promise((_, reject) => (refuse = reject)) : inner.append(messages, options),
    };
    const log = createLogger('silent');
    const metrics = createMetrics();
    const hub = createHub({ store, clock: createHybridClock('nodelocal0'), metrics, log, maxMessageBytes: 1 << 20 });
    const config = loadConfig({ flags: { port: '0', 'data-dir': dir, 'log-level': 'silent' }, env: {} });
    config.sources = [
      {
        name: 'feed',
        kind: 'http',
        url: `http://127.0.0.1:${(upstream.address() as { port: number }).port}/`,
        interval_ms: 50,
        timeout_ms: 100, // a publish is given up on at 1 s
        backoff_min_ms: 10,
        backoff_max_ms: 50,
        topic: 't.feed',
        items_path: '$[*]',
        id_path: '$.id',
      },
    ];
    const component = await createSourcesComponent({
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
    await component?.start?.();
    const status = () =>
      (component?.status?.() as { sources: { abandoned_publishes: number; dropped_publishes: number }[] }).sources[0];
    const counted = async () => {
      const text = await metrics.registry.metrics();
      const stage = (name: string) =>
        Number(
          new RegExp(`^anode_source_abandoned_publishes_total\\{source="feed",stage="${name}"\\} (\\d+)$`, 'm').exec(
            text,
          )?.[1] ?? 0,
        );
      return { running: stage('running'), queued: stage('queued'), rejected: stage('rejected') };
    };
    try {
      // The first poll's publish is given up on at its cap, the next polls' while queued behind it.
      const before = await waitFor('a running and a queued give-up', async () => {
        const c = await counted();
        return c.running === 1 && c.queued >= 1 ? c : undefined;
      });
      assert.equal(status()?.abandoned_publishes, 1);
      assert.ok((status()?.dropped_publishes ?? 0) >= before.queued);
      // The store refuses the publish given up on: lost after all, counted once more.
      refuse(new Error('store failed (test double)'));
      const c = await waitFor('the refusal counted', async () => {
        const c = await counted();
        return c.rejected === 1 ? c : undefined;
      });
      assert.equal(c.running, 1);
      // Nothing is queued behind a healthy store any more: the status and the series agree.
      assert.equal(status()?.dropped_publishes, c.queued + c.rejected);
    } finally {
      await component?.stop?.();
      await hub.writer.drain();
    }
  });
});

describe('sources component: a deleted source’s publish the store takes late', () => {
  const upstream = createServer((_request, response) => {
    response.setHeader('content-type', 'application/json');
    // A dead letter (a ts a day ahead), published first, then an item.
    response.end(JSON.stringify([{ id: 'ahead', ts: Date.now() + 86_400_000 }, { id: 'one' }]));
  });
  let dir: string;
  let node: Awaited<ReturnType<typeof createRelayNode>> | undefined;
  let release = () => {};
  after(async () => {
    release();
    await node?.stop();
    upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('counts nothing for the source created anew under its name', async () => {
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    dir = await mkdtemp(join(tmpdir(), 'anode-sources-unit-'));
    const flags = { port: '0', 'data-dir': dir, 'log-level': 'silent', 'admin-token': TOKEN };
    let held = false;
    node = await createRelayNode(loadConfig({ flags, env: {} }), createLogger('silent'), {
      // A test double: the source's first append hangs until released (a store that stopped answering).
      wrapStore: (inner) => ({
        ...inner,
        append(messages, options) {
          if (held || !messages.some((m) => m.source === 'again')) return inner.append(messages, options);
          held = true;
          return new Promise((resolve) => (release = () => resolve(inner.append(messages, options))));
        },
      }),
    });
    const { url } = await node.start();
    const admin = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${url}/v1/admin/sources${path}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as { status?: Record<string, unknown> } };
    };
    const source = {
      name: 'again',
      kind: 'http',
      url: `http://127.0.0.1:${(upstream.address() as { port: number }).port}/`,
      interval_ms: 50,
      timeout_ms: 100, // a publish is given up on at 1 s
      backoff_max_ms: 50,
      topic: 't.again',
      items_path: '$[*]',
      id_path: '$.id',
      ts_path: '$.ts',
    };
    assert.equal((await admin('POST', '', source)).status, 201);
    await waitFor('the publish given up on', async () =>
      (await admin('GET', '/again')).body.status?.abandoned_publishes === 1 ? true : undefined,
    );
    assert.equal((await admin('DELETE', '/again')).status, 200);
    assert.equal((await admin('POST', '', { ...source, paused: true })).status, 201);
    release(); // the store takes the deleted source's publish: its dead letter, then its item
    await waitFor('the publish done', async () =>
      (await admin('GET', '/again')).body.status?.publish_stuck === false ? true : undefined,
    );
    const text = await (await fetch(`${url}/metrics`)).text();
    const read = (series: string) =>
      Number(
        text
          .split('\n')
          .find((line) => line.startsWith(`${series} `))
          ?.split(' ')[1] ?? 0,
      );
    assert.equal(
      read('anode_messages_published_total{via="source"}'),
      2,
      'the store took the dead letter and the item',
    );
    // Before, both counted for the source created anew, whose series start at zero: 1 and 1.
    const counted = {
      items: read('anode_source_items_total{source="again"}'),
      deadLetters: read('anode_source_dead_letters_total{source="again"}'),
    };
    assert.deepEqual(counted, { items: 0, deadLetters: 0 });
  });
});

describe('sources component: a config-file source changed through the admin API', () => {
  let dir: string;
  let node: Awaited<ReturnType<typeof createRelayNode>> | undefined;
  after(async () => {
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the admin change over a later edit of the file, and says so at startup naming the fields', async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-sources-unit-'));
    const flags = { port: '0', 'data-dir': dir, 'log-level': 'silent', 'admin-token': TOKEN };
    const inFile = (url: string) => ({
      ...loadConfig({ flags, env: {} }),
      sources: [{ name: 'filed', kind: 'http', url, topic: 't.filed', interval_ms: 60_000, paused: true }],
    });
    node = await createRelayNode(inFile('http://127.0.0.1:1/first'), createLogger('silent'));
    const { url } = await node.start();
    const patched = await fetch(`${url}/v1/admin/sources/filed`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ interval_ms: 30_000 }),
    });
    assert.equal(patched.status, 200);
    await node.stop();

    const lines: { msg?: string; source?: string; fields?: string[] }[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    node = await createRelayNode(inFile('http://127.0.0.1:1/edited'), createLogger('warn', sink));
    const again = await node.start();
    const shown = (await (
      await fetch(`${again.url}/v1/admin/sources/filed`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).json()) as { url: string; interval_ms: number };
    assert.deepEqual([shown.url, shown.interval_ms], ['http://127.0.0.1:1/first', 30_000]);
    // Before, the edited url was ignored without a word.
    const warned = lines.find((line) => line.source === 'filed' && /admin change replaced/.test(line.msg ?? ''));
    assert.deepEqual(warned?.fields, ['interval_ms', 'url']);
  });
});

describe('sources component: an admin change the disk refuses', () => {
  let dir: string;
  let node: Awaited<ReturnType<typeof createRelayNode>> | undefined;
  after(async () => {
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 503 unavailable naming the OS error and the file, and the source stays as it was', async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-sources-unit-'));
    const flags = { port: '0', 'data-dir': dir, 'log-level': 'silent', 'admin-token': TOKEN };
    node = await createRelayNode(loadConfig({ flags, env: {} }), createLogger('silent'));
    const { url } = await node.start();
    const send = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${url}/v1/admin/sources${path}`, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const source = { name: 's1', kind: 'http', url: 'http://127.0.0.1:9/x', topic: 't.s1', paused: true };
    assert.equal((await send('POST', '', source)).status, 201);
    // A real write failure (tests run as root, chmod does not stop writes): a folder where
    // sources.log goes, so every append fails with EISDIR.
    const journal = join(dir, 'sources.log');
    await rm(journal, { force: true });
    await mkdir(journal);
    const file = journal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const expected = new RegExp(
      `^the change of source s1 was not saved and is undone: cannot write ${file}: EISDIR: illegal operation on a directory; retry once that is fixed$`,
    );
    for (const [method, path, body] of [
      ['PATCH', '/s1', { topic: 't.changed' }],
      ['PUT', '/s1', { ...source, topic: 't.changed' }],
      ['POST', '/s1/resume', undefined],
      ['DELETE', '/s1', undefined],
    ] as const) {
      const failed = await send(method, path, body);
      assert.equal(failed.status, 503, `${method} ${path}`);
      const error = failed.body.error as { code: string; message: string };
      assert.equal(error.code, 'unavailable');
      assert.match(error.message, expected);
      const shown = await send('GET', '/s1');
      assert.equal(shown.status, 200);
      assert.deepEqual([shown.body.topic, shown.body.paused], ['t.s1', true], `after ${method} ${path}`);
    }
  });
});
