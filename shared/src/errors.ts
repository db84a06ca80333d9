/**
 * Protocol error codes (PROTOCOL.md) and the one error class hierarchy every node throws.
 * Wire codes are stable; WebSocket close codes live in their own 4000–4999 range (close-codes.ts).
 */
export const ERROR_CODES = [
  'bad_frame',
  'too_large',
  'bad_topic',
  'unauthorized',
  'forbidden',
  'rate_limited',
  'cursor_expired',
  'unavailable',
  'limit_reached',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export const HTTP_STATUS: Record<ErrorCode, number> = {
  bad_frame: 400,
  too_large: 413,
  bad_topic: 400,
  unauthorized: 401,
  forbidden: 403,
  rate_limited: 429,
  cursor_expired: 410,
  unavailable: 503,
  limit_reached: 429,
  internal: 500,
};

export class AnodeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = 'AnodeError';
  }

  get status(): number {
    return HTTP_STATUS[this.code];
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

// One class per wire code, declared plainly so each is both a value and a type.
export class BadFrameError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('bad_frame', message, options);
    this.name = 'BadFrameError';
  }
}
export class TooLargeError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('too_large', message, options);
    this.name = 'TooLargeError';
  }
}
export class BadTopicError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('bad_topic', message, options);
    this.name = 'BadTopicError';
  }
}
export class UnauthorizedError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('unauthorized', message, options);
    this.name = 'UnauthorizedError';
  }
}
export class ForbiddenError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('forbidden', message, options);
    this.name = 'ForbiddenError';
  }
}
export class RateLimitedError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('rate_limited', message, options);
    this.name = 'RateLimitedError';
  }
}
export class CursorExpiredError extends AnodeError {
  /** The cursor through which the topic lost messages, when the refusal knows it. */
  readonly trimmedThrough: string | undefined;
  constructor(message: string, options?: ErrorOptions & { trimmedThrough?: string }) {
    super('cursor_expired', message, options);
    this.name = 'CursorExpiredError';
    this.trimmedThrough = options?.trimmedThrough;
  }
}
export class UnavailableError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('unavailable', message, options);
    this.name = 'UnavailableError';
  }
}
/** A cap (connections per token or address, subscriptions per connection) is reached. */
export class LimitReachedError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('limit_reached', message, options);
    this.name = 'LimitReachedError';
  }
}
export class InternalError extends AnodeError {
  constructor(message: string, options?: ErrorOptions) {
    super('internal', message, options);
    this.name = 'InternalError';
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** Any thrown value as an AnodeError; unknown failures become `internal` without leaking details. */
export function toAnodeError(error: unknown): AnodeError {
  if (error instanceof AnodeError) return error;
  return new InternalError('internal error', { cause: error });
}
