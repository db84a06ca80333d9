import type { ErrorCode } from '../../shared/src/errors.ts';

/**
 * What a node sends a client (shared/PROTOCOL.md), as plain types: the protocol's own are
 * inferred from zod schemas, which a package without dependencies cannot ship.
 * wire.check.ts holds these to the protocol's types, so the two cannot drift apart.
 */
export interface Envelope {
  id: string;
  topic: string;
  cursor: string;
  source: string;
  ts: number;
  data: unknown;
}

export type ServerFrame =
  | ({ op: 'msg' } & Envelope)
  | { op: 'subscribed'; topic: string; cursor: string; ref?: string | undefined }
  | { op: 'ack'; id: string; cursor: string; ref?: string | undefined }
  | { op: 'err'; code: ErrorCode; message: string; ref?: string | undefined }
  | { op: 'pong'; ref?: string | undefined };
