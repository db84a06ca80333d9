// What the catch-up scheduler's yield tests (sync-yield*.test.ts) share: waits, and a test double of
// catchUpFrom's wait on a peer that ends as the real one does when its signal aborts.
import type { CatchUpPlan } from './catch-up-progress.ts';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `done` every 5 ms until it holds or `ms` passed (the caller asserts what it waited for). */
export const until = async (done: () => boolean, ms = 2_000) => {
  for (const end = performance.now() + ms; !done() && performance.now() < end;) await sleep(5);
};

/** Test double of catchUpFrom's wait on the peer: resolves after `ms`, rejects with the signal's reason on abort. */
export const wait = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });

/** A catch-up that never ends: rejects with the signal's reason once it aborts. */
export const untilAborted = (signal: AbortSignal) =>
  new Promise<number>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });

/** A peer's catch-up as a test double of catchUpFrom: `turn` counts this peer's runs from 0. */
export type Behaviour = (after: string, signal: AbortSignal, plan: CatchUpPlan, turn: number) => Promise<number>;

/** The endless member: lists a new (empty) topic on every page and reads it to its end, until aborted. */
export const endless: Behaviour = (_after, signal, plan, turn) => {
  plan.finished(`t${turn}`);
  return untilAborted(signal);
};
