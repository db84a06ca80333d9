/**
 * One source's publishes, one at a time, each given up on once its signal aborts. A publish given
 * up on while the store still runs it (a store that never answers) is abandoned, not cancelled:
 * it may yet finish, and what it stores is kept and counted. The next publish starts only once
 * that one has settled, and one given up on while it waited never reaches the store. So a source
 * holds at most one abandoned publish whatever the store does: a source's payloads are published
 * in order, one after another, so a second one sent to a store that has not answered the first
 * would only queue behind it there.
 */
export interface PublishGate {
  /**
   * Runs `publish` once every earlier one has settled. Rejects with the signal's reason as soon as
   * it aborts, whether `publish` is still waiting (it then never runs) or running (abandoned).
   */
  run(publish: () => Promise<void>, signal: AbortSignal): Promise<void>;
  /** Whether a publish given up on is still running in the store (the next one waits for it). */
  readonly stuck: boolean;
}

export function createPublishGate(): PublishGate {
  let busy = false;
  let stuck = false;
  const waiting: (() => void)[] = [];
  const next = () => {
    busy = false;
    stuck = false;
    waiting.shift()?.();
  };
  return {
    get stuck() {
      return stuck;
    },
    run(publish, signal) {
      return new Promise<void>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason);
        let started = false;
        let settled = false;
        const done = () => {
          settled = true;
          signal.removeEventListener('abort', onAbort);
          next();
        };
        const start = () => {
          busy = true;
          started = true;
          let running: Promise<void>;
          try {
            running = publish();
          } catch (error) {
            running = Promise.reject(error);
          }
          running.then(
            () => (done(), resolve()),
            (error: unknown) => (done(), reject(error)),
          );
        };
        const onAbort = () => {
          if (!started) waiting.splice(waiting.indexOf(start), 1);
          else if (!settled) stuck = true;
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        if (busy) waiting.push(start);
        else start();
      });
    },
  };
}
