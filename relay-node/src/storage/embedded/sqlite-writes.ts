import type { DatabaseSync } from 'node:sqlite';
import type { RetentionPolicy } from '@anode/shared';
import type { Row } from './sqlite-schema.ts';

/**
 * Everything that writes to the embedded store, one transaction per call: appends and retention.
 * Run by the writer thread (or in-process for an in-memory database), so a commit waiting on the
 * disk never holds up the relay's event loop.
 */

/** A message as stored: id, topic, cursor, source, ts, and data as JSON text. */
export type WriteRow = [id: string, topic: string, cursor: string, source: string, ts: number, data: string];

/**
 * A row not written because another message (another id) holds its (topic, cursor). Only a
 * second node minting under the same node id can cause it (see AppendResult.conflict).
 */
export const CURSOR_TAKEN = 'cursor_taken';
export type Appended = Row | null | typeof CURSOR_TAKEN;

export interface Writes {
  /**
   * Per row: null when it was inserted, the row already stored under its id, or CURSOR_TAKEN
   * when another message holds its (topic, cursor).
   */
  append(rows: readonly WriteRow[]): Appended[];
  /**
   * Apply the retention policy to the topics from `fromTopic` on (in name order), deleting at most
   * `budget` messages in this transaction. `next` is the topic to go on from, or null once every
   * topic is within the policy.
   */
  sweep(nowMs: number, retention: RetentionPolicy, budget: number, fromTopic?: string): SweepStep;
}

export interface SweepStep {
  /** Messages deleted. */
  deleted: number;
  /** Latest rows deleted (by age), not counted in `deleted`: each is a copy of a message. */
  latestDeleted: number;
  next: string | null;
}

/** Cursor prefix for a wall-clock time: every cursor minted before `ms` sorts below it. */
// shared's cursorFloor, spelled here because this module runs on the writer thread, which loads no
// package code (the shared index would bring zod and jose into every writer).
const cursorFloor = (ms: number) => `${Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0')}0000-0`;

/** Topics read per retention step (see sweep). */
const TOPICS_PER_STEP = 256;

export function createWrites(db: DatabaseSync): Writes {
  const q = (sql: string) => db.prepare(sql);
  const insert = q('INSERT OR IGNORE INTO messages (id, topic, cursor, source, ts, data) VALUES (?, ?, ?, ?, ?, ?)');
  const byId = q('SELECT * FROM messages WHERE id = ?');
  const upsertLatest = q(`
    INSERT INTO latest (topic, source, id, cursor, ts, data) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (topic, source) DO UPDATE SET
      id = excluded.id, cursor = excluded.cursor, ts = excluded.ts, data = excluded.data
    WHERE excluded.ts > latest.ts OR (excluded.ts = latest.ts AND excluded.id > latest.id)`);
  const countTopic = q(
    'INSERT INTO topics (topic, count) VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET count = count + excluded.count',
  );
  const topicsFrom = q('SELECT topic, count FROM topics WHERE topic >= ? ORDER BY topic LIMIT ?');
  // The oldest messages below a cursor, at most `limit` of them: the last one's cursor and how many.
  const oldestBefore = q(`SELECT MAX(cursor) AS c, COUNT(*) AS n FROM
    (SELECT cursor FROM messages WHERE topic = ? AND cursor < ? ORDER BY cursor LIMIT ?)`);
  const nth = q('SELECT cursor FROM messages WHERE topic = ? ORDER BY cursor LIMIT 1 OFFSET ?');
  const deleteThrough = q('DELETE FROM messages WHERE topic = ? AND cursor <= ?');
  // A source's newest message older than the age limit: its latest row goes with it (at most `limit`).
  const deleteLatestBefore = q(`DELETE FROM latest WHERE topic = ? AND source IN
    (SELECT source FROM latest WHERE topic = ? AND cursor < ? LIMIT ?)`);
  const markTrimmed = q(`UPDATE topics SET count = count - ?, trimmed_through = MAX(COALESCE(trimmed_through, ''), ?)
    WHERE topic = ?`);

  const transaction = <T>(work: () => T): T => {
    db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      db.exec('COMMIT');
      return result;
    } catch (error) {
      // A failed COMMIT (SQLITE_FULL) has rolled back already: a ROLLBACK then throws "no
      // transaction is active", and that error replaced the one that says why.
      if (db.isTransaction) db.exec('ROLLBACK');
      throw error;
    }
  };

  const trimThrough = (topic: string, cursor: string, count: number) => {
    deleteThrough.run(topic, cursor);
    markTrimmed.run(count, cursor, topic);
  };

  return {
    append: (rows) =>
      transaction(() => {
        // `latest` and the topic counts are written once per batch: the newest inserted message
        // per (topic, source), by the same rule as the upsert's, and one count per topic.
        const newest = new Map<string, WriteRow>();
        const counts = new Map<string, number>();
        const results = rows.map((row): Appended => {
          const [id, topic, , source, ts] = row;
          if (insert.run(...row).changes === 0) return (byId.get(id) as Row | undefined) ?? CURSOR_TAKEN;
          const key = `${topic}\n${source}`; // neither name may hold a newline
          const held = newest.get(key);
          if (!held || ts > held[4] || (ts === held[4] && id > held[0])) newest.set(key, row);
          counts.set(topic, (counts.get(topic) ?? 0) + 1);
          return null;
        });
        for (const [id, topic, cursor, source, ts, data] of newest.values()) {
          upsertLatest.run(topic, source, id, cursor, ts, data);
        }
        for (const [topic, count] of counts) countTopic.run(topic, count);
        return results;
      }),

    sweep(nowMs, { maxAgeMs, maxMessages }, budget, fromTopic = '') {
      let deleted = 0;
      let latestDeleted = 0;
      // Rows this step deleted, messages and latest rows: what bounds its transaction (`budget`).
      let spent = 0;
      let next: string | null = null;
      transaction(() => {
        // Read before writing: the loop updates rows of `topics`, which a live cursor over it must
        // not see change under it. A page at a time, so a step costs the same with many topics.
        const page = topicsFrom.all(fromTopic, TOPICS_PER_STEP) as { topic: string; count: number }[];
        for (const { topic, count } of page) {
          let room = budget - spent;
          if (room <= 0) {
            next = topic;
            return;
          }
          let remaining = count;
          if (maxAgeMs > 0) {
            const floor = cursorFloor(nowMs - maxAgeMs);
            // The expired ones, at most `room` (a COUNT of them all would read them all, millions
            // after a busy minute); with `room` of them, there may be more: this topic again next.
            const old = oldestBefore.get(topic, floor, room) as { c: string | null; n: number };
            if (old.c !== null && old.n > 0) {
              trimThrough(topic, old.c, old.n);
              remaining -= old.n;
              deleted += old.n;
              spent += old.n;
              room -= old.n;
            }
            // Latest rows expire by the same age (before, /latest served a source's last message
            // for ever after history had dropped it); the count limit leaves them: the newest per
            // source stays. Counted apart from messages deleted: each is a copy of one.
            if (room > 0) {
              const gone = Number(deleteLatestBefore.run(topic, topic, floor, room).changes);
              latestDeleted += gone;
              spent += gone;
              room -= gone;
            }
            if (room === 0) {
              next = topic;
              return;
            }
          }
          if (maxMessages > 0 && remaining > maxMessages) {
            const excess = Math.min(remaining - maxMessages, room);
            const row = nth.get(topic, excess - 1) as { cursor: string } | undefined;
            if (!row) continue; // fewer messages than counted: nothing to trim (never seen)
            trimThrough(topic, row.cursor, excess);
            deleted += excess;
            spent += excess;
            if (excess < remaining - maxMessages) {
              next = topic;
              return;
            }
          }
        }
        // Topic names hold no NUL: the smallest name after the page's last.
        const last = page.at(-1);
        if (page.length === TOPICS_PER_STEP && last) next = `${last.topic}\u0000`;
      });
      return { deleted, latestDeleted, next };
    },
  };
}
