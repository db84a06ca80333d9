/**
 * WebSocket close codes for the server's own reasons (4000–4999), kept apart from error codes.
 * A client reconnects after any of them except `auth_expired` (it needs a new token first).
 */
export const CLOSE_CODES = {
  /** The node is shutting down; reconnect (with backoff) to it or another node. */
  shutdown: 4000,
  /** The subscriber fell too far behind: its send buffer passed the node's limit. Resume with the last cursor. */
  slow_consumer: 4001,
  /** The token's `exp` passed while connected. */
  auth_expired: 4002,
  /** A started frame did not finish within the node's `frame_timeout_ms` (a stalled or hostile sender). */
  frame_timeout: 4003,
} as const;

export type CloseReason = keyof typeof CLOSE_CODES;

/** Standard code sent (by the WebSocket library) when a frame exceeds the hard size cap. */
export const CLOSE_MESSAGE_TOO_BIG = 1009;
