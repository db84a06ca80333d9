/**
 * One source's publishes, one at a time, in the order they came: a source's payloads are
 * published in order, so a second one sent to a store that has not answered the first would only
 * queue behind it there. The manager keeps one gate per source name, across the runtimes an
 * update, a pause or a merged change makes, so the bound below holds per source.
 *
 * A publish is given up on once it has run `capMs` (or its signal aborts: its attempt's cap). It
 * is abandoned, not cancelled: the store may yet finish it, and what it stores is kept and
 * counted; the gate is `stuck` until it settles, and the next publish waits for it. So a source
 * holds at most one abandoned publish whatever the store does. A queued publish is not timed
 * while the one ahead of it runs healthy (a burst behind a slow store loses nothing); only once
 * that one was given up on does the queued one wait `capMs` for it, and is then dropped without
 * ever reaching the store. So that a kind emitting faster than a healthy store takes cannot grow
 * the queue for ever, at most MAX_QUEUED_PUBLISHES wait: one more is refused at once, dropped.
 */
export interface PublishGate {
  /**
   * Runs `publish` once every earlier one has settled; rejects when it is given up on, and at once
   * (a PublishQueueFullError) when MAX_QUEUED_PUBLISHES already wait.
   */
  run(publish: () => Promise<void>, options: GateRun): Promise<void>;
  /** A publish given up on is still running in the store (the next one waits for it). */
  readonly stuck: boolean;
  /** Publishes given up on while running (the store may still take them). */
  readonly abandoned: number;
  /**
   * Payloads lost: given up on while queued (or refused, the queue full), never sent to the
   * store; abandoned ones the store then refused; and those a driver reports `lost`.
   */
  readonly dropped: number;
  /** `count` payloads the source's driver took but never emitted (a stream's queued frames). */
  lost(count: number): void;
  /**
   * The counters start again from zero (a deleted source created anew); `stuck` is left as is, and
   * `epoch` moves on: what a publish of an earlier epoch meets later is no longer counted.
   */
  restartCounts(): void;
  /** Which incarnation of the source the counters are of (see `restartCounts`). */
  readonly epoch: number;
  /** Resolves once no publish runs or waits. */
  idle(): Promise<void>;
}

/**
 * How many publishes of a source may wait in its gate. The built-in kinds never come near it (an
 * http poll awaits its emit, a websocket stream has one frame in the gate at a time, the rest in
 * its own bounded buffer); a plugin's burst of a thousand payloads is a burst (seconds of work for
 * a store that takes a few ms each, and each waiting payload is held in memory). More than that
 * waiting means the kind emits faster than the store takes, for good: waiting longer only grows
 * the heap, and holds a poll attempt's slot while its publishes wait (its cap paused meanwhile).
 */
export const MAX_QUEUED_PUBLISHES = 1_000;

/**
 * The errors the gate rejected a publish with when it gave it up (counted by the gate already, in
 * `abandoned` or `dropped`, unless of an earlier epoch), kept apart from a failure of the publish
 * itself (a store refusal), which the gate passes on uncounted: a stream whose emit rejects counts
 * the payload lost only then.
 */
const givenUp = new WeakSet<object>();
export const gaveUp = (error: unknown): boolean => typeof error === 'object' && error !== null && givenUp.has(error);

export class PublishQueueFullError extends Error {
  override name = 'PublishQueueFullError';
  constructor() {
    super(
      `publishing behind: ${MAX_QUEUED_PUBLISHES} payloads of the source already wait for the store; payload dropped`,
    );
  }
}

/**
 * Where a publish was given up on: `running` in the store (which may still take it), `queued`
 * (never sent: lost), or `rejected` (abandoned while running, then refused by the store: lost).
 */
export type GiveUpStage = 'running' | 'queued' | 'rejected';

export interface GateRun {
  capMs: number;
  /** The error a publish past `capMs` rejects with. */
  tooLong(): Error;
  /** Gives the publish up on as it aborts, with its reason. */
  signal?: AbortSignal;
  /** The publish leaves the queue and goes to the store. */
  onStart?(): void;
  /** Only when counted: not for a publish of an earlier epoch (see `restartCounts`). */
  onGiveUp?(stage: GiveUpStage, error: Error): void;
  /** The source's epoch the publish is of (default: the current one). */
  epoch?: number;
}

interface Entry {
  publish: () => Promise<void>;
  options: GateRun;
  resolve(): void;
  reject(error: unknown): void;
  timer?: ReturnType<typeof setTimeout>;
  givenUp: boolean;
  epoch: number;
  detach(): void;
}

export function createPublishGate(): PublishGate {
  let running: Entry | undefined;
  let stuck = false;
  let abandoned = 0;
  let dropped = 0;
  let epoch = 0;
  const queue: Entry[] = [];
  let idlers: (() => void)[] = [];

  // Unref'd: a publish left waiting by a stop holds no process open.
  const arm = (entry: Entry, onCap: () => void) => {
    entry.timer ??= setTimeout(onCap, entry.options.capMs);
    entry.timer.unref();
  };
  const disarm = (entry: Entry) => {
    clearTimeout(entry.timer);
    entry.timer = undefined;
  };

  const giveUp = (entry: Entry, stage: GiveUpStage, error: Error) => {
    entry.givenUp = true;
    disarm(entry);
    entry.detach();
    if (stage === 'running') {
      stuck = true;
      // Those queued behind it now wait on a store that does not answer: from now on, timed.
      for (const queued of queue) arm(queued, () => drop(queued, queued.options.tooLong()));
    } else queue.splice(queue.indexOf(entry), 1);
    count(entry, stage, error);
    givenUp.add(error);
    entry.reject(error);
  };
  const drop = (entry: Entry, error: Error) => giveUp(entry, 'queued', error);
  /** One publish given up on, unless it is of an earlier incarnation of the source (restartCounts). */
  const count = (entry: Pick<Entry, 'epoch' | 'options'>, stage: GiveUpStage, error: Error) => {
    if (entry.epoch !== epoch) return;
    if (stage === 'running') abandoned += 1;
    else dropped += 1;
    entry.options.onGiveUp?.(stage, error);
  };

  const start = (entry: Entry) => {
    running = entry;
    entry.options.onStart?.();
    arm(entry, () => giveUp(entry, 'running', entry.options.tooLong()));
    let publishing: Promise<void>;
    try {
      publishing = entry.publish();
    } catch (error) {
      publishing = Promise.reject(error);
    }
    publishing.then(
      () => settle(entry, () => entry.resolve()),
      (error: unknown) =>
        settle(entry, () => entry.reject(error), error instanceof Error ? error : new Error(String(error))),
    );
  };

  /** `failure`: the store refused it. One given up on already is lost after all: counted once more. */
  const settle = (entry: Entry, answer: () => void, failure?: Error) => {
    disarm(entry);
    if (!entry.givenUp) {
      entry.detach();
      answer();
    } else if (failure) count(entry, 'rejected', failure);
    running = undefined;
    stuck = false;
    for (const queued of queue) disarm(queued); // behind a healthy one again: not timed
    const next = queue.shift();
    if (next) return start(next);
    const waiting = idlers;
    idlers = [];
    for (const wake of waiting) wake();
  };

  return {
    get stuck() {
      return stuck;
    },
    get abandoned() {
      return abandoned;
    },
    get dropped() {
      return dropped;
    },
    lost(count) {
      dropped += count;
    },
    restartCounts() {
      abandoned = 0;
      dropped = 0;
      epoch += 1;
    },
    get epoch() {
      return epoch;
    },
    idle: () => (running === undefined && queue.length === 0 ? Promise.resolve() : new Promise((r) => idlers.push(r))),
    run(publish, options) {
      return new Promise<void>((resolve, reject) => {
        const { signal } = options;
        if (signal?.aborted) return reject(signal.reason);
        if (queue.length >= MAX_QUEUED_PUBLISHES) {
          const error = new PublishQueueFullError();
          count({ epoch: options.epoch ?? epoch, options }, 'queued', error);
          givenUp.add(error);
          return reject(error);
        }
        const entry: Entry = {
          publish,
          options,
          resolve,
          reject,
          givenUp: false,
          epoch: options.epoch ?? epoch,
          detach: () => {},
        };
        if (signal) {
          const onAbort = () => giveUp(entry, running === entry ? 'running' : 'queued', signal.reason as Error);
          signal.addEventListener('abort', onAbort, { once: true });
          entry.detach = () => signal.removeEventListener('abort', onAbort);
        }
        if (!running) return start(entry);
        queue.push(entry);
        if (stuck) arm(entry, () => drop(entry, options.tooLong()));
      });
    },
  };
}
