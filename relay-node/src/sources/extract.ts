import { createHash } from 'node:crypto';
import { JSONPath } from 'jsonpath-plus';
import type { CommonDefinition } from './definition.ts';
import { jsonPreview, writeJson } from './json-text.ts';
import { reasonOf } from './pipeline.ts';

/** One item taken from a payload, mapped to the fields of a message. */
export interface SourceItem {
  id: string;
  ts: number;
  topic: string;
  data: unknown;
  /** Why the item's fields could not be read (`Name: message`); it goes to the dead-letter topic. */
  error?: string;
}

type Mapping = Pick<CommonDefinition, 'topic' | 'items_path' | 'id_path' | 'ts_path' | 'topic_path'>;

const query = (path: string, json: unknown): unknown[] =>
  JSONPath({ path, json: json as object, wrap: true, eval: 'safe' }) as unknown[];

const first = (path: string | undefined, json: unknown): unknown =>
  path === undefined || json === null || typeof json !== 'object' ? undefined : query(path, json)[0];

/**
 * A hash of the item's JSON: the same content gives the same id, so it is ingested once. Data
 * too deep for JSON.stringify is hashed piece by piece, to the same digest.
 */
export function hashId(data: unknown): string {
  const hash = createHash('sha256');
  let text: string;
  try {
    text = JSON.stringify(data) ?? 'undefined';
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    // Pieces are gathered into chunks: one update per piece is ten times slower.
    let chunk = '';
    writeJson(data, (piece) => {
      chunk += piece;
      if (chunk.length >= 65_536) {
        hash.update(chunk);
        chunk = '';
      }
      return true;
    });
    text = chunk;
  }
  return `h${hash.update(text).digest('base64url').slice(0, 22)}`;
}

/** hashId, or for data that has no JSON (only a plugin kind can emit that) a hash of its preview. */
const safeHashId = (data: unknown): string => {
  try {
    return hashId(data);
  } catch {
    return hashId(jsonPreview(data, 4096));
  }
};

/**
 * An item's own id: a string or a number. An empty string is no id, as a missing one: taken as
 * the id, it made every item of a source that sends `""` the same one, so dedup dropped all but
 * the first, silently and for good.
 */
const idOf = (value: unknown): string | undefined =>
  (typeof value === 'string' && value !== '') || typeof value === 'number' ? String(value) : undefined;

/**
 * Epoch units told apart by magnitude, smallest first: seconds below 1e11 (year 5138), then
 * milliseconds below 1e14, microseconds below 1e17, nanoseconds above. Each reads dates from 1973
 * to 5138. Microseconds were read as milliseconds before: a ts 50,000 years ahead, so every item
 * of such a source was dead-lettered.
 */
const EPOCH_UNITS: readonly [below: number, toMs: number][] = [
  [1e11, 1000],
  [1e14, 1],
  [1e17, 1e-3],
  [Infinity, 1e-6],
];

/** A source timestamp: an epoch number in seconds, ms, µs or ns (by magnitude), or a date string. */
export function toTimestamp(value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  if (typeof n === 'number' && Number.isFinite(n) && n > 0) {
    const [, toMs] = EPOCH_UNITS.find(([below]) => n < below) as [number, number];
    return Math.round(n * toMs);
  }
  if (typeof n === 'string') {
    const parsed = Date.parse(n);
    return Number.isNaN(parsed) ? undefined : parsed;
  }
  return undefined;
}

/**
 * The items of a payload: the matches of `items_path` (an array match is spread), or the
 * whole payload. Each item's id, timestamp and topic come from its paths, with fallbacks: a
 * content hash (also for an empty id), the ingest time, and the source's topic. An item whose fields cannot be read
 * (a path search or its hash overflowing the stack on deep data) comes back with `error` and
 * a content-hash id, so it is dead-lettered once instead of failing the whole payload.
 */
export function extractItems(payload: unknown, mapping: Mapping, now = Date.now()): SourceItem[] {
  let raw: unknown[] = [payload];
  if (mapping.items_path !== undefined) {
    let found: unknown[];
    try {
      found = payload !== null && typeof payload === 'object' ? query(mapping.items_path, payload) : [];
    } catch (error) {
      // A recursive path (`$..x`) through data too deep to search: no items can be told apart,
      // so the payload goes to the dead-letter topic as one item rather than failing on every poll.
      return [{ id: safeHashId(payload), ts: now, topic: mapping.topic, data: payload, error: reasonOf(error) }];
    }
    raw = found.length === 1 && Array.isArray(found[0]) ? found[0] : found;
  }
  return raw.map((data) => {
    try {
      const id = first(mapping.id_path, data);
      const topic = first(mapping.topic_path, data);
      return {
        id: idOf(id) ?? hashId(data),
        ts: toTimestamp(first(mapping.ts_path, data)) ?? now,
        topic: typeof topic === 'string' && topic !== '' ? topic : mapping.topic,
        data,
      };
    } catch (error) {
      return { id: safeHashId(data), ts: now, topic: mapping.topic, data, error: reasonOf(error) };
    }
  });
}
