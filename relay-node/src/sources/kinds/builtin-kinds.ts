import type { SourceKind } from '../source-kind.ts';
import { httpKind } from './http-kind.ts';
import { websocketKind } from './websocket-kind.ts';

/** The kinds a relay knows; a new kind is one module and one entry here. */
export const BUILTIN_KINDS: ReadonlyMap<string, SourceKind> = new Map(
  [httpKind, websocketKind].map((kind) => [kind.kind, kind]),
);
