import { createHeap } from '../heap.ts';

/**
 * Runs keyed jobs at their due time, earliest due first, with `concurrency` slots. Fairness:
 * jobs of sources that are failing or slow go in the `penalty` lane, which may hold at most a
 * quarter of the slots; and a normal job still running after `demoteAfterMs` (an upstream that
 * just started hanging) moves to the penalty lane, giving its slot back. So hundreds of hanging
 * upstreams, each holding a connection until its timeout, cannot starve the healthy ones.
 * Jobs in flight stay bounded: at most `concurrency` × (longest job / `demoteAfterMs`), where a
 * source's attempt fails within 10 × its `timeout_ms`, publishing included, and ends at most a
 * grace of max(`timeout_ms`, 1 s) later (its driver then replaced; source-runtime.ts).
 * One timer for both heaps, so ten thousand sources cost one pending timeout.
 */
export type Lane = 'normal' | 'penalty';

export interface Scheduler {
  /** Run `job` for `key` at `due` (epoch ms), replacing any pending run of that key. */
  schedule(key: string, due: number, job: () => Promise<void>, lane?: Lane): void;
  cancel(key: string): void;
  /** When `key` is due next, if pending. */
  dueOf(key: string): number | undefined;
  readonly inFlight: number;
  /** Jobs already due and waiting for a slot. */
  readonly waiting: number;
  stop(): void;
}

interface Entry {
  key: string;
  due: number;
  seq: number;
  lane: Lane;
  job: () => Promise<void>;
}

const before = (a: Entry, b: Entry) => a.due < b.due || (a.due === b.due && a.seq < b.seq);

export interface SchedulerOptions {
  concurrency: number;
  /** Share of the slots the penalty lane may hold (default 0.25). */
  penaltyShare?: number;
  /** A normal job running longer than this moves to the penalty lane (default 1000 ms). */
  demoteAfterMs?: number;
  now?: () => number;
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  const now = options.now ?? Date.now;
  const penaltyCap = Math.max(1, Math.floor(options.concurrency * (options.penaltyShare ?? 0.25)));
  const demoteAfterMs = options.demoteAfterMs ?? 1000;
  const heaps = { normal: createHeap(before), penalty: createHeap(before) };
  const pending = new Map<string, Entry>();
  const running = { normal: 0, penalty: 0 };
  let seq = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timerAt = Infinity;
  let stopped = false;

  const inFlight = () => running.normal + running.penalty;
  /** The earliest live entry of a lane, dropping replaced and cancelled ones. */
  const peek = (lane: Lane): Entry | undefined => {
    const heap = heaps[lane];
    for (let top = heap.peek(); top; top = heap.peek()) {
      if (pending.get(top.key) === top) return top;
      heap.pop();
    }
    return undefined;
  };
  /** The next entry that may take a slot now (its lane has room), earliest first. */
  const candidate = (): Entry | undefined => {
    // Penalty jobs beyond the lane's share (demoted ones) never take slots from normal jobs.
    const normalRoom = running.normal + Math.min(running.penalty, penaltyCap) < options.concurrency;
    const penaltyRoom = running.penalty < penaltyCap && inFlight() < options.concurrency;
    const normal = normalRoom ? peek('normal') : undefined;
    const penalty = penaltyRoom ? peek('penalty') : undefined;
    if (!normal) return penalty;
    if (!penalty) return normal;
    return before(normal, penalty) ? normal : penalty;
  };

  const pump = () => {
    if (stopped) return;
    const t = now();
    for (let next = candidate(); next && next.due <= t; next = candidate()) {
      const entry = next;
      heaps[entry.lane].pop();
      pending.delete(entry.key);
      let lane = entry.lane;
      running[lane] += 1;
      const demote =
        lane === 'normal'
          ? setTimeout(() => {
              running.normal -= 1;
              running.penalty += 1;
              lane = 'penalty';
              pump();
            }, demoteAfterMs)
          : undefined;
      void entry
        .job()
        .catch(() => {})
        .finally(() => {
          clearTimeout(demote);
          running[lane] -= 1;
          pump();
        });
    }
    arm();
  };

  const arm = () => {
    const at = candidate()?.due ?? Infinity;
    if (at === timerAt) return;
    clearTimeout(timer);
    timerAt = at;
    if (at === Infinity) return;
    timer = setTimeout(
      () => {
        timerAt = Infinity;
        pump();
      },
      Math.max(0, at - now()),
    );
  };

  const scheduler: Scheduler = {
    schedule(key, due, job, lane = 'normal') {
      const entry = { key, due, seq: seq++, lane, job };
      pending.set(key, entry);
      heaps[lane].push(entry);
      if (due <= now()) queueMicrotask(pump);
      else arm();
    },
    cancel(key) {
      pending.delete(key);
    },
    dueOf: (key) => pending.get(key)?.due,
    get inFlight() {
      return inFlight();
    },
    get waiting() {
      const t = now();
      let n = 0;
      for (const entry of pending.values()) if (entry.due <= t) n += 1;
      return n;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      pending.clear();
      heaps.normal.clear();
      heaps.penalty.clear();
    },
  };
  return scheduler;
}
