import { type Logger, pino } from 'pino';

export type { Logger };

/** Structured JSON-lines logging; components get a child logger with their name. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** How long the final, synchronous flush of the log at exit may wait for a reader that is not reading. */
export const FINAL_FLUSH_MS = 1_000;

export interface ProcessLogger {
  log: Logger;
  /** Called once when standard output has no reader any more (EPIPE). */
  onOutputLost(listener: () => void): void;
}

/**
 * The relay process's logger, on standard output. Two failure modes of a pipe are made bounded:
 * a reader that exited (EPIPE: pino goes silent by itself; we also tell the process, which stops)
 * and a reader that stopped reading (EAGAIN: pino's exit-time flush would retry forever in
 * `Atomics.wait`; we give it FINAL_FLUSH_MS and then drop the tail).
 */
export function createProcessLogger(level: string): ProcessLogger {
  let giveUpAt = Number.POSITIVE_INFINITY;
  const destination = pino.destination({ fd: 1, sync: false, retryEAGAIN: () => Date.now() < giveUpAt });
  const flushSync = destination.flushSync.bind(destination);
  destination.flushSync = () => {
    giveUpAt = Date.now() + FINAL_FLUSH_MS;
    try {
      flushSync();
    } catch {
      // the reader is gone or stalled: losing the last lines beats never exiting
    }
  };
  const listeners: (() => void)[] = [];
  let lost = false;
  destination.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE' || lost) return;
    lost = true;
    for (const listener of listeners) listener();
  });
  return {
    log: createLogger(level, destination),
    onOutputLost: (listener) => void listeners.push(listener),
  };
}

/**
 * A line that can come in floods (requests a client repeats, writes refused again and again):
 * the first is logged at once, then at most one line per `everyMs`, with how many came since
 * (in `countField`, default `count`) and the fields of the latest; what a window counted is
 * logged when it ends, and `flush` logs the rest (at stop). One line per refused request let one
 * client grow the log by ~900 bytes a request.
 */
export function throttledLog(
  log: Logger,
  level: 'info' | 'warn' | 'error',
  message: string,
  options: { everyMs?: number; countField?: string } = {},
) {
  const everyMs = options.everyMs ?? 10_000;
  const countField = options.countField ?? 'count';
  let count = 0;
  let loggedAt = Number.NEGATIVE_INFINITY;
  let latest: Record<string, unknown> = {};
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    if (count === 0) return;
    loggedAt = performance.now();
    log[level]({ ...latest, [countField]: count }, message);
    count = 0;
  };
  /** Count `n` more (default 1), with the fields of the latest. */
  const note = (fields: Record<string, unknown>, n = 1) => {
    count += n;
    latest = fields;
    const since = performance.now() - loggedAt;
    if (since >= everyMs) flush();
    else if (!timer) {
      timer = setTimeout(flush, everyMs - since);
      timer.unref();
    }
  };
  /** Log what is counted now, and stop the timer (at stop: nothing logged after it, nothing lost). */
  note.flush = () => {
    clearTimeout(timer);
    flush();
  };
  return note;
}

/** throttledLog at warn level, with the count in `count`. */
export const throttledWarning = (log: Logger, message: string, everyMs = 10_000) =>
  throttledLog(log, 'warn', message, { everyMs });
