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

const subclass = (code: ErrorCode, name: string) => {
  const Subclass = class extends AnodeError {
    constructor(message: string, options?: ErrorOptions) {
      super(code, message, options);
      this.name = name;
    }
  };
  // Loggers and inspectors name an error by its constructor; an anonymous class would read "".
  return Object.defineProperty(Subclass, 'name', { value: name });
};

export const BadFrameError = subclass('bad_frame', 'BadFrameError');
export const TooLargeError = subclass('too_large', 'TooLargeError');
export const BadTopicError = subclass('bad_topic', 'BadTopicError');
export const UnauthorizedError = subclass('unauthorized', 'UnauthorizedError');
export const ForbiddenError = subclass('forbidden', 'ForbiddenError');
export const RateLimitedError = subclass('rate_limited', 'RateLimitedError');
export const CursorExpiredError = subclass('cursor_expired', 'CursorExpiredError');
export const UnavailableError = subclass('unavailable', 'UnavailableError');
export const InternalError = subclass('internal', 'InternalError');

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** Any thrown value as an AnodeError; unknown failures become `internal` without leaking details. */
export function toAnodeError(error: unknown): AnodeError {
  if (error instanceof AnodeError) return error;
  return new InternalError('internal error', { cause: error });
}
