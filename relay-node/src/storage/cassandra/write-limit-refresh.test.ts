import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import cassandra from 'cassandra-driver';
import { createCassandraStore } from './cassandra-store.ts';

/**
 * A TEST DOUBLE of the driver's client (cassandra.Client.prototype patched, as no real Cassandra
 * can be made to hide system_views.settings or answer it slowly on demand): connect and shutdown
 * succeed at once, the schema and bucket-size reads answer "already set up", and
 * system_views.settings answers with `settings` (or throws `settingsError`). The limit's refresh
 * against a real Cassandra is test/cassandra/cassandra-write-limit-refresh.test.ts.
 */
const MiB = 1024 ** 2;
const state: {
  concurrent?: number;
  maxConcurrent?: number;
  slowMs?: number;
  settings: { name: string; value: string }[];
  settingsError?: Error;
  settingsReads: number;
  hold?: Promise<void>;
} = {
  settings: [],
  settingsReads: 0,
};
const rs = (rows: Record<string, unknown>[]) =>
  ({ rows, first: () => rows[0] ?? null }) as unknown as cassandra.types.ResultSet;
const proto = cassandra.Client.prototype as unknown as Record<string, unknown>;
proto.connect = async function () {
  await state.hold;
};
proto.shutdown = async () => {};
proto.execute = async (query: string) => {
  if (/schema_migrations/.test(query) && /^SELECT/.test(query))
    return rs(Array.from({ length: 100 }, (_, i) => ({ version: i + 1 })));
  if (/SELECT value FROM .*keyspace_settings/.test(query)) return rs([{ value: '3600000' }]);
  if (/system_views\.settings/.test(query)) {
    state.settingsReads += 1;
    state.concurrent = (state.concurrent ?? 0) + 1;
    state.maxConcurrent = Math.max(state.maxConcurrent ?? 0, state.concurrent);
    try {
      if (state.slowMs) await new Promise((r) => setTimeout(r, state.slowMs));
    } finally {
      state.concurrent -= 1;
    }
    if (state.settingsError) throw state.settingsError;
    return rs(state.settings);
  }
  return rs([{ '[applied]': true }]);
};
proto.batch = async () => rs([]);

const settingsAt = (bytes: number) => [
  { name: 'native_transport_max_frame_size', value: `${bytes}B` },
  { name: 'max_mutation_size', value: `${bytes}B` },
];

const logs: { level: string; message: string }[] = [];
const log = {
  info: (_f: unknown, message?: string) => logs.push({ level: 'info', message: String(message ?? _f) }),
  warn: (_f: unknown, message?: string) => logs.push({ level: 'warn', message: String(message ?? _f) }),
  error: (_f: unknown, message?: string) => logs.push({ level: 'error', message: String(message ?? _f) }),
  debug: () => {},
  child: () => log,
} as never;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const options = async (extra: Record<string, unknown>) => {
  const dir = await mkdtemp(join(tmpdir(), 'rv-limit-'));
  dirs.push(dir);
  return {
    dir,
    opts: {
      contactPoints: ['127.0.0.1:1'],
      localDataCenter: 'dc1',
      keyspace: 'ks',
      replication: 'SimpleStrategy:1',
      writeConsistency: 'ONE',
      readConsistency: 'ONE',
      concurrency: 4,
      bucketMs: 3_600_000,
      timeoutMs: 1_000,
      retention: { maxAgeMs: 0, maxMessages: 0 },
      limitFile: join(dir, 'cassandra-write-limit'),
      log,
      ...extra,
    },
  };
};
const envelope = (bytes: number) => ({
  id: 'k-review-1',
  topic: 't',
  cursor: '0000000000000001-aaaa-0000',
  source: 's',
  ts: 1,
  data: 'x'.repeat(bytes),
});

describe('Cassandra write limit: refresh, a cluster that shows none, close', () => {
  it('A: a cluster whose settings cannot be read goes by its own answers, not a stale limit file', async () => {
    // The old cluster took 1 MiB (kept in the file); the cluster now behind the contact points
    // takes more but shows no system_views.settings (3.x, a managed service, no permission).
    const { opts } = await options({ limitRefreshMs: 0 });
    await writeFile(opts.limitFile, `${1 * MiB}\n`, { mode: 0o600 });
    state.settingsError = Object.assign(new Error('unconfigured table settings (test double)'), { code: 0x2200 });
    const store = createCassandraStore(opts as never);
    try {
      await store.open?.();
      // docs/storage.md: "without that table it goes by Cassandra's answers"
      assert.equal(
        store.tooLarge(envelope(2 * MiB) as never),
        undefined,
        'a 2 MiB message refused by the stale 1 MiB file',
      );
    } finally {
      await store.close();
      state.settingsError = undefined;
    }
  });

  it('B: no interval left running after close() when close() meets a connect in flight', async () => {
    const { opts } = await options({ limitRefreshMs: 60_000 });
    state.settings = settingsAt(1 * MiB);
    let release!: () => void;
    state.hold = new Promise<void>((r) => (release = r));
    // Intervals made and not cleared, tracked by wrapping the globals (unref'd ones are not in
    // process.getActiveResourcesInfo()).
    const live = new Set<unknown>();
    const realSet = globalThis.setInterval;
    const realClear = globalThis.clearInterval;
    globalThis.setInterval = ((fn: () => void, ms: number) => {
      const t = realSet(fn, ms);
      live.add(t);
      return t;
    }) as typeof setInterval;
    globalThis.clearInterval = ((t: unknown) => {
      live.delete(t);
      realClear(t as never);
    }) as typeof clearInterval;
    const store = createCassandraStore(opts as never);
    const opening = store.open?.().catch(() => {});
    await new Promise((r) => setTimeout(r, 20));
    const closing = store.close();
    release();
    state.hold = undefined;
    await closing;
    await opening;
    await new Promise((r) => setTimeout(r, 50));
    globalThis.setInterval = realSet;
    globalThis.clearInterval = realClear;
    const leaked = live.size;
    for (const t of live) realClear(t as never);
    assert.equal(leaked, 0, 'the refresh interval made after close() began, never cleared');
  });

  it('C: a connect read that failed, then a refresh that finds the same limit as the file: the max_message_bytes warning is never given', async () => {
    const { opts } = await options({ limitRefreshMs: 50, maxMessageBytes: 16 * MiB });
    await writeFile(opts.limitFile, `${1 * MiB}\n`, { mode: 0o600 });
    state.settingsError = new Error('Operation timed out (test double)');
    const start = logs.length;
    const store = createCassandraStore(opts as never);
    try {
      await store.open?.();
      state.settingsError = undefined;
      state.settings = settingsAt(1 * MiB);
      const reads = state.settingsReads;
      for (let i = 0; i < 100 && state.settingsReads < reads + 2; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(state.settingsReads >= reads + 2, 'refreshed');
      const mine = logs.slice(start);
      assert.ok(
        mine.some((l) => l.level === 'warn' && /max_message_bytes is larger than Cassandra takes/.test(l.message)),
        `max_message_bytes 16 MiB over a 1 MiB limit never warned: ${JSON.stringify(mine)}`,
      );
    } finally {
      await store.close();
    }
  });
  it('D: a connect read that fails for now (timed out) keeps the limit the file holds', async () => {
    const { opts } = await options({ limitRefreshMs: 0 });
    await writeFile(opts.limitFile, `${1 * MiB}\n`, { mode: 0o600 });
    state.settingsError = new Error('Operation timed out (test double)');
    const store = createCassandraStore(opts as never);
    try {
      await store.open?.();
      assert.equal(store.tooLarge(envelope(2 * MiB) as never)?.code, 'too_large');
      assert.equal((await readFile(opts.limitFile, 'utf8')).trim(), String(1 * MiB));
    } finally {
      await store.close();
      state.settingsError = undefined;
    }
  });
  it('E: reads never overlap, and an outage of many failed reads warns once per streak', async () => {
    const { opts } = await options({ limitRefreshMs: 10 });
    state.settings = settingsAt(1 * MiB);
    const store = createCassandraStore(opts as never);
    const start = logs.length;
    try {
      await store.open?.();
      state.slowMs = 60;
      state.maxConcurrent = 0;
      const reads = state.settingsReads;
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(state.maxConcurrent, 1, 'overlapping reads');
      assert.ok(state.settingsReads - reads <= 8, `reads ${state.settingsReads - reads}`);
      state.slowMs = 0;
      state.settingsError = new Error('NoHostAvailable (test double)');
      await new Promise((r) => setTimeout(r, 200));
      state.settingsError = undefined;
      await new Promise((r) => setTimeout(r, 100));
      state.settingsError = new Error('NoHostAvailable (test double)');
      await new Promise((r) => setTimeout(r, 200));
      const warned = logs.slice(start).filter((l) => /could not read Cassandra's write limits/.test(l.message));
      assert.equal(warned.length, 2, 'one per streak');
    } finally {
      await store.close();
      state.settingsError = undefined;
    }
  });
});
