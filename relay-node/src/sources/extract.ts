import { createHash } from 'node:crypto';
import { JSONPath } from 'jsonpath-plus';
import type { CommonDefinition } from './definition.ts';

/** One item taken from a payload, mapped to the fields of a message. */
export interface SourceItem {
  id: string;
  ts: number;
  topic: string;
  data: unknown;
}

type Mapping = Pick<CommonDefinition, 'topic' | 'items_path' | 'id_path' | 'ts_path' | 'topic_path'>;

const query = (path: string, json: unknown): unknown[] =>
  JSONPath({ path, json: json as object, wrap: true, eval: 'safe' }) as unknown[];

const first = (path: string | undefined, json: unknown): unknown =>
  path === undefined || json === null || typeof json !== 'object' ? undefined : query(path, json)[0];

/** A hash of the item's JSON: the same content gives the same id, so it is ingested once. */
export const hashId = (data: unknown): string =>
  `h${createHash('sha256')
    .update(JSON.stringify(data) ?? 'undefined')
    .digest('base64url')
    .slice(0, 22)}`;

/** A source timestamp: epoch milliseconds, epoch seconds (below 1e11), or a date string. */
export function toTimestamp(value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  if (typeof n === 'number' && Number.isFinite(n) && n > 0) return Math.round(n < 1e11 ? n * 1000 : n);
  if (typeof n === 'string') {
    const parsed = Date.parse(n);
    return Number.isNaN(parsed) ? undefined : parsed;
  }
  return undefined;
}

/**
 * The items of a payload: the matches of `items_path` (an array match is spread), or the
 * whole payload. Each item's id, timestamp and topic come from its paths, with fallbacks: a
 * content hash, the ingest time, and the source's topic.
 */
export function extractItems(payload: unknown, mapping: Mapping, now = Date.now()): SourceItem[] {
  let raw: unknown[] = [payload];
  if (mapping.items_path !== undefined) {
    const found = payload !== null && typeof payload === 'object' ? query(mapping.items_path, payload) : [];
    raw = found.length === 1 && Array.isArray(found[0]) ? found[0] : found;
  }
  return raw.map((data) => {
    const id = first(mapping.id_path, data);
    const topic = first(mapping.topic_path, data);
    return {
      id: typeof id === 'string' || typeof id === 'number' ? String(id) : hashId(data),
      ts: toTimestamp(first(mapping.ts_path, data)) ?? now,
      topic: typeof topic === 'string' ? topic : mapping.topic,
      data,
    };
  });
}
