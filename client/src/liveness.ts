import { MAX_TIMER_MS } from '../../shared/src/timers.ts';

/**
 * How the client tells a connection that is gone from one that is quiet, one interval at a
 * time (`pingIntervalMs`). Without it, a peer gone without a FIN (a sleeping laptop, a NAT that
 * forgot the flow) was noticed only when TCP gave up, minutes later or never for a subscriber
 * that sends nothing, and browsers cannot see the node's WebSocket pings; an upgrade never
 * answered (a frozen node, a proxy holding the connection) held the client on that attempt.
 */
export interface SocketWatch {
  /** The socket opened: the upgrade's deadline ends, the keepalive begins. */
  opened(): void;
  /** A frame came in: the connection is alive. */
  heard(): void;
  stop(): void;
}

/** The keepalive's interval when the option leaves it out. */
export const KEEPALIVE_MS = 30_000;

/**
 * A numeric option as given, or `otherwise` when it is not a number of 0 or more: undefined, null,
 * NaN (a `Number()` of an unset variable), a negative one or not a number at all. A numeric string
 * (a setting passed through from the environment by plain JavaScript) is its number.
 */
export function numberOption(given: unknown, otherwise: number): number {
  const n = typeof given === 'string' && given.trim() !== '' ? Number(given) : given;
  return typeof n === 'number' && n >= 0 ? n : otherwise;
}

/** The interval from the option: `undefined` when keepalive is off. */
export function keepaliveInterval(given: number | false | null | undefined): number | undefined {
  // Read as the other numeric options are (numberOption): null, NaN, below 0 or not a number is
  // the default (NaN turned keepalive off, silently), a numeric string its number.
  const ms = given === false ? false : numberOption(given, KEEPALIVE_MS);
  // 0 is off; past what a timer keeps (Infinity too) is off: setTimeout would fire it after 1 ms.
  return ms !== false && ms > 0 && ms < MAX_TIMER_MS ? ms : undefined;
}

/**
 * Until the socket opens, `drop`s it when the upgrade is not answered within the interval; then
 * `ping`s every interval and `drop`s it when nothing came in since the previous ping.
 */
export function watchSocket(
  intervalMs: number | undefined,
  ping: () => boolean,
  drop: (why: string) => void,
  now: () => number = Date.now,
): SocketWatch {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let heard = false;
  let pinged = false;
  if (intervalMs) timer = setTimeout(() => drop(`no answer to the upgrade within ${intervalMs} ms`), intervalMs);
  return {
    opened() {
      clearTimeout(timer);
      if (!intervalMs) return;
      let ticked = now();
      timer = setInterval(() => {
        // A tick long overdue (the event loop was blocked) may run before the answer waiting in
        // the socket is read: it pings again instead of dropping a connection that may be fine.
        const late = now() - ticked > 1.5 * intervalMs;
        ticked = now();
        if (pinged && !heard && !late) return drop(`no answer to a keepalive ping within ${intervalMs} ms`);
        heard = false;
        pinged = ping();
      }, intervalMs);
    },
    heard() {
      heard = true;
    },
    stop() {
      clearTimeout(timer);
    },
  };
}

/**
 * Calls `onSilent` once nothing was heard for `ms` (`heardAt` is when something last came in),
 * counting from now; returns what cancels it. A connection that keeps bringing frames is not
 * gone, however long an answer takes behind them.
 */
export function afterSilence(
  ms: number,
  heardAt: () => number,
  onSilent: () => void,
  now: () => number = Date.now,
): () => void {
  const since = now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const wait = (delayMs: number) => {
    timer = setTimeout(() => {
      const left = Math.max(since, heardAt()) + ms - now();
      if (left > 0) wait(left);
      else onSilent();
    }, delayMs);
  };
  wait(ms);
  return () => clearTimeout(timer);
}

/**
 * A token function's answer, or a refusal once `ms` passed or `signal` aborts: one that never
 * settles (a fetch to an auth server that hangs) held the client before its socket for good, no
 * attempt after it; and the client's close() left the wait's timer keeping a process alive.
 */
export async function answerWithin<T>(
  answer: T | Promise<T>,
  ms: number | undefined,
  signal?: AbortSignal,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const late = new Promise<never>((_, reject) => {
    if (ms !== undefined) timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    onAbort = () => reject(new Error('given up'));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort);
  });
  try {
    return await Promise.race([answer, late]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}
