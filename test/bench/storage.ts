// Scenario 5, storage: appends per second and history-read latency of the embedded store at
// batch sizes 1, 10 and 100, beside a baseline of raw SQLite inserts (same file settings, no
// aNode layers) measured in the same run.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createHybridClock, type Envelope, randomId } from '@anode/shared';
import { createSqliteStore } from '@anode/relay-node/src/storage/embedded/sqlite-store.ts';
import { percentile } from './stats.ts';

export interface StorageResult {
  target: 'anode-embedded' | 'sqlite-baseline';
  batch: number;
  appends_per_s: number;
  read_p50_ms: number;
  read_p99_ms: number;
}

const clock = createHybridClock('bench');
const envelope = (n: number): Envelope => ({
  id: randomId(),
  topic: `bench.s${n % 10}`,
  cursor: clock.next(),
  source: 'bench',
  ts: Date.now(),
  data: { n, payload: 'x'.repeat(60) },
});

export async function runStorage(batch: number, messages: number): Promise<StorageResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'anode-bench-store-'));
  try {
    const store = createSqliteStore({ dataDir: join(dir, 'anode'), retention: { maxAgeMs: 0, maxMessages: 0 } });
    let started = performance.now();
    for (let i = 0; i < messages; i += batch) {
      await store.append(Array.from({ length: batch }, (_, j) => envelope(i + j)));
    }
    const anodeRate = messages / ((performance.now() - started) / 1000);
    const history = await store.history('bench.s1', { limit: 100_000 });
    const reads: number[] = [];
    for (let i = 0; i < 200; i++) {
      const after = history[Math.floor(Math.random() * history.length)]?.cursor;
      const t = performance.now();
      await store.history('bench.s1', { after, limit: 100 });
      reads.push(performance.now() - t);
    }
    await store.close();
    reads.sort((a, b) => a - b);

    const db = new DatabaseSync(join(dir, 'raw.sqlite'));
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;');
    db.exec('CREATE TABLE m (id TEXT PRIMARY KEY, topic TEXT, cursor TEXT, data TEXT) WITHOUT ROWID');
    db.exec('CREATE INDEX m_tc ON m (topic, cursor)');
    const insert = db.prepare('INSERT INTO m VALUES (?, ?, ?, ?)');
    const read = db.prepare('SELECT * FROM m WHERE topic = ? AND cursor > ? ORDER BY cursor LIMIT 100');
    started = performance.now();
    for (let i = 0; i < messages; i += batch) {
      db.exec('BEGIN');
      for (let j = 0; j < batch; j++) {
        const e = envelope(i + j);
        insert.run(e.id, e.topic, e.cursor, JSON.stringify(e.data));
      }
      db.exec('COMMIT');
    }
    const rawRate = messages / ((performance.now() - started) / 1000);
    const rawReads: number[] = [];
    for (let i = 0; i < 200; i++) {
      const after = history[Math.floor(Math.random() * history.length)]?.cursor ?? '';
      const t = performance.now();
      read.all('bench.s1', after);
      rawReads.push(performance.now() - t);
    }
    db.close();
    rawReads.sort((a, b) => a - b);
    return [
      {
        target: 'anode-embedded',
        batch,
        appends_per_s: Math.round(anodeRate),
        read_p50_ms: percentile(reads, 50),
        read_p99_ms: percentile(reads, 99),
      },
      {
        target: 'sqlite-baseline',
        batch,
        appends_per_s: Math.round(rawRate),
        read_p50_ms: percentile(rawReads, 50),
        read_p99_ms: percentile(rawReads, 99),
      },
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
