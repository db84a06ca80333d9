import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CURSOR_ZERO, cursorFloor } from '@anode/shared';
import type { Logger } from '../logger.ts';
import { PRIVATE_FILE_MODE } from '../private-files.ts';
import { type CatchUpPlan, type CatchUpProgress, planCatchUp } from './catch-up-progress.ts';

/**
 * When to catch up, from whom, and from where. For every peer this node keeps a watermark: the
 * time up to which it holds everything that peer held (set when a catch-up from it succeeds,
 * and moved on while it stays connected, since gossip then delivers, but only as far as the
 * last ping it answered: a silent peer's loss is noticed after three missed pings, later than
 * the lookback reaches back). When a peer connects, the node asks it for everything after its
 * watermark minus a lookback (clock skew and delivery delay); a peer it never caught up from is
 * asked for everything. (Asking such a peer only from when this node last synced with anyone
 * assumed the other peers already held that peer's messages; after a partition they need not,
 * and the chaos run found replicas that never converged that way. A full catch-up costs one history transfer per new peer, deduplicated
 * by id on append.)
 * Watermarks live in `mesh-sync.json` in the data folder, so a node that was down or cut off
 * asks for exactly its gap when it returns. Catch-ups run one at a time, but one running longer
 * than `longRunMs` no longer holds back the next peer's: that one starts beside it (at most
 * MAX_CATCH_UPS at once, one per peer). When every slot is held by one that has run that long and
 * another peer waits, the one that has held its slot longest yields it (see yieldSlot) and goes to
 * the back of the queue. A failed one is retried with backoff while the peer stays
 * connected. A resync asked while a catch-up from that peer runs
 * (a store write failed, its gossip link was cut) runs once more after it, from the resync's time.
 * How far a failed catch-up got is kept too (catch-up-progress.ts), so the next attempt resumes.
 */
export interface SyncOptions {
  dataDir: string;
  lookbackMs: number;
  log: Logger;
  /**
   * Catch up from `peer` after `after`, each topic from `plan.from(topic)`, reporting progress to
   * `plan`; resolves with how many messages were new here.
   */
  run(peer: string, after: string, signal: AbortSignal, plan: CatchUpPlan): Promise<number>;
  tickMs?: number;
  now?: () => number;
  /** How long a catch-up runs before the next queued one may start beside it (default LONG_RUN_MS). */
  longRunMs?: number;
}

interface State {
  peers: Record<string, number>;
  /** Last time this node was in touch with the mesh (synced with at least one peer). */
  any?: number;
  /** How far the last failed catch-up from a peer got (none once one succeeds). */
  progress?: Record<string, CatchUpProgress>;
}

interface Run {
  peer: string;
  since: number;
  done: Promise<void>;
  slot: AbortController;
  yielded: boolean;
  /**
   * When it read past the progress it resumed (performance.now()): it yields only longRunMs after,
   * so every turn gets that long for what is new, not for asking again what it had read.
   */
  moved?: number;
  /**
   * It resumes a progress not left by a turn on this connection (a failed run, an earlier
   * connection): it asks every topic read whole again first, so it yields only once it has moved.
   */
  asksAgain: boolean;
}

interface Entry {
  synced: boolean;
  attempts: number;
  retry?: ReturnType<typeof setTimeout>;
  /**
   * A resync asked while this peer's catch-up ran, or waited between turns (see turn): from when to
   * catch up again once it ends. Kept across a yield: the catch-up has not ended, its next run ends it.
   */
  again?: number;
  /** Everything the peer sent before this time has arrived (see heard). */
  heard?: number;
  /**
   * The progress this connection's last yielded turn left (read on this connection, so gossip has
   * covered it since): the next turn goes on from it, asking no topic read whole again.
   */
  turn?: CatchUpProgress;
}

/** A watermark of a peer not connected is forgotten after this long (see forgetGone). */
export const WATERMARK_TTL_MS = 7 * 24 * 3_600_000;
/** At most this many watermarks are kept (the oldest of peers not connected go first). */
export const MAX_WATERMARKS = 1_000;

/**
 * A catch-up running this long lets the next queued one start beside it. Catch-ups ran strictly
 * one at a time, so a member listing a new topic name on every page, each with nothing behind it,
 * held the queue for ever: every such page brings a topic not read before, so catch-up.ts's bound
 * on pages that bring nothing new never trips, and an honest relay's listing of many topics quiet
 * since the watermark looks the same (no bound on those can tell them apart).
 */
export const LONG_RUN_MS = 15_000;
/**
 * At most this many catch-ups at once (each past LONG_RUN_MS but the newest): one peer's endless
 * catch-up no longer holds the others, and a joining node's first full catch-up (which can run for
 * minutes) is overlapped by one more at most, not by one per peer. Two endless ones held both slots
 * for ever, so once both have run LONG_RUN_MS and another peer waits, the older one yields its slot.
 */
export const MAX_CATCH_UPS = 2;

/** The smallest valid cursor minted at `ms`. */
export const cursorAt = (ms: number) => (ms <= 0 ? CURSOR_ZERO : cursorFloor(ms));

const asRecord = (value: unknown): Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};

const optionalString = (value: unknown) => value === undefined || typeof value === 'string';

function validProgress(value: unknown): boolean {
  const p = asRecord(value);
  return (
    typeof p.after === 'string' &&
    Number.isFinite(p.started) &&
    optionalString(p.through) &&
    optionalString(p.topic) &&
    optionalString(p.cursor)
  );
}

export function createSync(options: SyncOptions) {
  const now = options.now ?? Date.now;
  const path = join(options.dataDir, 'mesh-sync.json');
  const { log } = options;
  let state: State = { peers: {} };
  const connected = new Map<string, Entry>();
  // A resync asked while no catch-up of the peer ran (it waited, or was not connected), or a failed
  // run's start: its next catch-up reads from here if that is before the watermark. Per peer, not
  // per connection, so it outlives a reconnect, and a run of an older connection that ends well
  // and moves the watermark on past it; saved as the watermark (see write), so it outlives a restart.
  const pendingFrom = new Map<string, number>();
  const keep = (peer: string, at: number) => pendingFrom.set(peer, Math.min(pendingFrom.get(peer) ?? at, at));
  // Where each running catch-up reads from: saved as the watermark until it ends, so a process
  // killed mid-run reads from there again (its watermark may have moved on past it meanwhile).
  const reading = new Map<string, number>();
  const queue: string[] = [];
  const longRunMs = options.longRunMs ?? LONG_RUN_MS;
  // The catch-ups running now, by entry, with when each started (performance.now()): stop waits
  // for them, as a failed one saves its progress; resync looks for the entry's. `slot` aborts one
  // run alone (a yield); `yielded` says that is why it ended.
  const running = new Map<Entry, Run>();
  // Set while a check for a catch-up that has run long is pending (see drain).
  let longCheck: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let ticker: ReturnType<typeof setInterval> | undefined;
  const abort = new AbortController();
  let markFirst: () => void = () => {};
  const firstSync = new Promise<void>((resolve) => (markFirst = resolve));
  const stats = { runs: 0, failures: 0, yields: 0, received: 0, last: undefined as string | undefined };

  const write = async () => {
    const tmp = `${path}.tmp`;
    // Owner-only, as every file in the data folder (private-files.ts tightens an older one).
    const peers = { ...state.peers };
    // A resync asked while a catch-up ran (entry.again, kept across a yield) is owed too: a process
    // killed before the catch-up ends reads from there on restart.
    const owed: [string, number][] = [];
    for (const [peer, entry] of connected) if (entry.again !== undefined) owed.push([peer, entry.again]);
    for (const [entry, run] of running) if (entry.again !== undefined) owed.push([run.peer, entry.again]);
    for (const points of [pendingFrom, reading, owed]) {
      for (const [peer, at] of points) if (peers[peer] !== undefined) peers[peer] = Math.min(peers[peer], at);
    }
    await writeFile(tmp, JSON.stringify({ ...state, peers }), { mode: PRIVATE_FILE_MODE });
    await rename(tmp, path);
  };
  // Saves run one after another: two at once share the temporary file, and the second rename
  // finds it gone (ENOENT).
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => (saving = saving.catch(() => {}).then(write));
  const saveQuietly = () => save().catch((error: unknown) => log.warn({ err: error }, 'cannot save mesh-sync.json'));

  // Watermarks of peers not connected are forgotten after WATERMARK_TTL_MS, and beyond
  // MAX_WATERMARKS the oldest go first: relays whose data folder is not kept (a new peer key per
  // restart) would otherwise add one for good per restart, to a file rewritten every tick. A
  // forgotten peer that does come back is caught up from the start of what it keeps.
  const forgetGone = (): boolean => {
    const gone = Object.entries(state.peers).filter(([peer]) => !connected.has(peer));
    const cutoff = now() - WATERMARK_TTL_MS;
    const excess = Object.keys(state.peers).length - MAX_WATERMARKS;
    const drop = new Set(gone.filter(([, at]) => at < cutoff).map(([peer]) => peer));
    if (excess > drop.size) {
      for (const [peer] of gone.sort((a, b) => a[1] - b[1])) {
        if (drop.size >= excess) break;
        drop.add(peer);
      }
    }
    for (const peer of drop) {
      delete state.peers[peer];
      pendingFrom.delete(peer); // without a watermark its next catch-up reads everything anyway
    }
    // The same for progress records (kept for peers with no watermark yet, too).
    const progress = state.progress ?? {};
    const stale = Object.entries(progress)
      .filter(([peer]) => !connected.has(peer))
      .sort((a, b) => a[1].started - b[1].started);
    const over = Object.keys(progress).length - MAX_WATERMARKS;
    const dropped = stale.filter(([, p], i) => p.started < cutoff || i < over).map(([peer]) => peer);
    for (const peer of dropped) delete progress[peer];
    return drop.size > 0 || dropped.length > 0;
  };

  /**
   * Move a synced peer's watermark on to when it was last heard: not to now, since a peer that
   * went silent (a partition, a frozen process, a dead link not noticed yet) delivers nothing
   * until its loss is noticed, which takes longer than the lookback.
   */
  const advance = (peer: string, entry: Entry): boolean => {
    const at = entry.heard;
    if (!entry.synced || at === undefined || at <= (state.peers[peer] ?? 0)) return false;
    state.peers[peer] = at;
    state.any = Math.max(state.any ?? 0, at);
    return true;
  };

  /** A catch-up from `peer` runs (on any of its connections). */
  const runs = (peer: string) => [...running.values()].some((run) => run.peer === peer);

  /**
   * A resync for `peer` whose next catch-up has not started (queued, retrying, or not connected):
   * that one reads from `since` (the watermark lowered, and the point kept). A peer with no
   * watermark is asked for everything anyway, unless a catch-up of an older connection of it (its
   * first, from the start) still runs: that one will set a watermark past `since`.
   */
  const owe = (peer: string, since: number) => {
    const held = state.peers[peer];
    if (held !== undefined) state.peers[peer] = Math.min(held, since);
    else if (!runs(peer)) return;
    keep(peer, since);
  };

  const takeAgain = (entry: Entry) => {
    const again = entry.again;
    entry.again = undefined;
    return again;
  };

  /**
   * Every slot is held by a catch-up that has run longRunMs and a peer waits that could start: the
   * one that has held its slot longest is stopped (its own signal, not the node's) and queued again
   * at the back. It ends as a yield, not a failure (afterYield): no backoff, its progress kept, so its
   * next run goes on from there. Two members whose listings never end held both slots for ever.
   */
  const yieldSlot = () => {
    const runs = [...running.values()];
    if (runs.some((run) => run.yielded)) return; // one is already giving its slot up
    const busy = new Set(runs.map((run) => run.peer));
    const waits = queue.some((peer) => !busy.has(peer) && connected.get(peer)?.synced === false);
    if (!waits) return;
    // A turn goes on from where its last stopped (it asks nothing again), so one that has not read
    // past it in longRunMs is listing only what it read: it yields as one that did. One that asks
    // again what a failed run or an earlier connection read would give its slot up for nothing (its
    // next turn asks it all again): it yields only longRunMs after its first step past it.
    const at = performance.now();
    const since = (run: Run) => run.moved ?? (run.asksAgain ? Number.POSITIVE_INFINITY : run.since);
    const ready = runs.filter((run) => at - since(run) >= longRunMs);
    if (ready.length === 0) {
      const soonest = Math.min(...runs.map((run) => since(run) + longRunMs));
      if (Number.isFinite(soonest) && longCheck === undefined) {
        longCheck = setTimeout(() => {
          longCheck = undefined;
          drain();
        }, soonest - at);
        longCheck.unref();
      }
      return;
    }
    const oldest = ready.reduce((a, b) => (b.since < a.since ? b : a));
    oldest.yielded = true;
    oldest.slot.abort(new Error('catch-up yields its slot to a waiting peer'));
  };

  /**
   * Start the next queued catch-up when none runs, or when every one running has run for
   * longRunMs (up to MAX_CATCH_UPS; past that, one yields its slot); a peer whose catch-up runs
   * waits in the queue for it.
   */
  const drain = () => {
    while (!stopped && queue.length > 0) {
      const at = performance.now();
      let newest = Number.NEGATIVE_INFINITY;
      for (const run of running.values()) newest = Math.max(newest, run.since);
      const wait = newest + longRunMs - at;
      if (wait > 0) {
        // Asked again once the newest run has run long, if it still runs then.
        if (longCheck === undefined) {
          longCheck = setTimeout(() => {
            longCheck = undefined;
            drain();
          }, wait);
          longCheck.unref();
        }
        return;
      }
      // The yielded run's end drains again.
      if (running.size >= MAX_CATCH_UPS) return yieldSlot();
      const busy = new Set([...running.values()].map((run) => run.peer));
      const i = queue.findIndex((peer) => !busy.has(peer));
      if (i < 0) return;
      const [peer] = queue.splice(i, 1) as [string];
      const entry = connected.get(peer);
      if (!entry || entry.synced) continue;
      const run: Run = {
        peer,
        since: at,
        done: Promise.resolve(),
        slot: new AbortController(),
        yielded: false,
        asksAgain: false,
      };
      running.set(entry, run);
      run.done = catchUp(peer, entry, run).finally(drain);
    }
  };

  /**
   * A run that gave its slot up (yieldSlot): it has not failed, so no backoff and no failure
   * counted. What it had not read is still owed: it reads from `since` again at the latest, with
   * its progress (the topics read whole from this run's start, the one it was reading from where it
   * stopped), and a resync asked while it ran stays on the entry for the run that ends the catch-up.
   */
  const afterYield = (peer: string, entry: Entry, since: number, kept: CatchUpProgress | undefined, own: boolean) => {
    stats.yields += 1;
    if (since > 0) keep(peer, since);
    if (kept) (state.progress ??= {})[peer] = kept;
    // Not queued again (the node stops, or the peer left while this run still held its slot, so
    // peerDown left the resync to the run): the resync asked while it ran is the next connection's.
    const gone = stopped || connected.get(peer) !== entry;
    const again = gone ? takeAgain(entry) : undefined;
    if (again !== undefined) owe(peer, again);
    saveQuietly();
    if (gone) return;
    // Only what this connection read: a turn that has not moved past a progress from before it
    // read none of it again for sure, so its next turn asks it again too.
    if (own) entry.turn = kept;
    log.info({ peer }, 'catch-up yields its slot to a waiting peer; queued again');
    queue.push(peer);
  };

  const catchUp = async (peer: string, entry: Entry, run: Run) => {
    const mark = state.peers[peer] ?? 0;
    const from = pendingFrom.get(peer);
    const since = from === undefined || mark === 0 ? mark : Math.min(mark, from);
    pendingFrom.delete(peer);
    if (since > 0) reading.set(peer, Math.min(reading.get(peer) ?? since, since));
    const after = cursorAt(since > 0 ? since - options.lookbackMs : 0);
    const started = now();
    stats.runs += 1;
    const previous = state.progress?.[peer];
    const same = entry.turn !== undefined && entry.turn === previous;
    entry.turn = undefined;
    // What it holds once it ends (`holds`): from where its first turn started, when it skips the
    // topics that turn read whole.
    const { plan, current: progress, holds } = planCatchUp(after, started, options.lookbackMs, previous, same);
    run.asksAgain = !same && previous !== undefined && previous.after <= after;
    const step = () => {
      if (run.moved !== undefined) return;
      const kept = progress();
      if (kept === undefined || kept === previous) return;
      run.moved = performance.now();
      queueMicrotask(drain); // a peer may be waiting for a slot only this run could give up
    };
    const tracked: CatchUpPlan = {
      from: (topic) => plan.from(topic),
      finished(topic) {
        plan.finished(topic);
        step();
      },
      reached(topic, cursor) {
        plan.reached(topic, cursor);
        step();
      },
      skip: (topic) => plan.skip?.(topic) ?? false,
      listAfter: plan.listAfter,
    };
    try {
      const fresh = await options.run(peer, after, AbortSignal.any([abort.signal, run.slot.signal]), tracked);
      if (state.progress) delete state.progress[peer];
      const again = takeAgain(entry);
      entry.attempts = 0;
      // What went missing during the run may lie behind where it read: run again from there.
      if (again === undefined) entry.synced = true;
      else queue.push(peer);
      state.peers[peer] = Math.min(holds, again ?? holds);
      state.any = Math.max(state.any ?? 0, holds);
      stats.received += fresh;
      stats.last = new Date(started).toISOString();
      log.info({ peer, after, fresh, ms: now() - started }, 'caught up from peer');
      markFirst();
      saveQuietly();
    } catch (error) {
      if (run.yielded) {
        const kept = progress();
        return afterYield(peer, entry, since, kept, same || kept !== previous);
      }
      stats.failures += 1;
      // Its retry reads from here at the latest, whatever a run of an older connection sets.
      if (since > 0) keep(peer, since);
      const again = takeAgain(entry);
      const mark = state.peers[peer];
      if (again !== undefined && mark !== undefined) state.peers[peer] = Math.min(mark, again);
      const kept = progress();
      if (kept) (state.progress ??= {})[peer] = kept;
      saveQuietly();
      if (stopped) return;
      // The peer went away during the run (peerDown): its next connection catches up anew, and a
      // retry timer on this entry could no longer be cleared, by peerDown or stop.
      if (connected.get(peer) !== entry) {
        log.warn({ err: error, peer }, 'catch-up failed; the peer is gone, so not retried');
        return;
      }
      const delay = Math.min(30_000, 500 * 2 ** entry.attempts++);
      log.warn({ err: error, peer, retryInMs: delay }, 'catch-up failed; will retry');
      entry.retry = setTimeout(() => {
        queue.push(peer);
        drain();
      }, delay);
      // Cleared by peerDown and stop; unref'd all the same: a retry holds no process open.
      entry.retry.unref();
    } finally {
      // Here, not once its promise settles: a resync right after the run counts it as ended.
      running.delete(entry);
      reading.delete(peer);
    }
  };

  return {
    firstSync,

    async start(): Promise<void> {
      try {
        const loaded = JSON.parse(await readFile(path, 'utf8')) as Partial<Record<keyof State, unknown>>;
        // A bad record is dropped, not kept: one with a cursor that is not a string failed every
        // catch-up from its peer for good.
        const peers = Object.entries(asRecord(loaded.peers)).filter(([, at]) => Number.isFinite(at));
        const progress = Object.entries(asRecord(loaded.progress)).filter(([, p]) => validProgress(p));
        state = {
          peers: Object.fromEntries(peers) as Record<string, number>,
          any: Number.isFinite(loaded.any) ? (loaded.any as number) : undefined,
          progress: Object.fromEntries(progress) as Record<string, CatchUpProgress>,
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
          log.warn({ err: error }, 'ignoring a bad mesh-sync.json');
      }
      ticker = setInterval(() => {
        let touched = forgetGone();
        for (const [peer, entry] of connected) touched = advance(peer, entry) || touched;
        if (touched) saveQuietly();
      }, options.tickMs ?? 2_000);
      ticker.unref();
    },

    /** A peer that serves catch-up is connected: catch up from it (once per connection). */
    peerUp(peer: string): void {
      if (stopped || connected.has(peer)) return;
      connected.set(peer, { synced: false, attempts: 0 });
      queue.push(peer);
      drain();
    },

    peerDown(peer: string): void {
      const entry = connected.get(peer);
      if (!entry) return;
      clearTimeout(entry.retry);
      advance(peer, entry);
      connected.delete(peer);
      // A yielded catch-up's resync (a running one's is its run's to keep): the next connection's.
      if (entry.again !== undefined && !running.has(entry)) owe(peer, entry.again);
    },

    /**
     * Everything `peer` sent before `at` has arrived (a ping sent then was answered): its watermark
     * may move on to `at` while it stays connected and synced.
     */
    heard(peer: string, at: number): void {
      const entry = connected.get(peer);
      if (entry) entry.heard = Math.max(entry.heard ?? 0, at);
    },

    /**
     * Something from `since` on may not have arrived (storing gossip failed, the gossip link to
     * `only` was interrupted, or `only` says it could not deliver its gossip): catch up again from
     * every connected peer, or just from `only`.
     */
    resync(since = now(), only?: string): void {
      // Saved at once when it lowers a point mesh-sync.json holds: a notice is not sent again, so a
      // process killed before the next save would read from the old point on restart.
      let lowered = false;
      const before = (peer: string) => Math.min(state.peers[peer] ?? Infinity, pendingFrom.get(peer) ?? Infinity);
      // Not connected (yet): it is caught up from `since` when it is (see owe).
      if (only !== undefined && !connected.has(only)) {
        lowered ||= since < before(only);
        owe(only, since);
      }
      for (const [peer, entry] of connected) {
        if (only !== undefined && peer !== only) continue;
        const at = Math.min(before(peer), reading.get(peer) ?? Infinity, entry.again ?? Infinity);
        lowered ||= state.peers[peer] !== undefined && since < at;
        // A catch-up from it is running, or yielded and goes on from where that turn stopped (its next
        // turn asks no topic read whole again): it may already have read past what went missing, and
        // would then set the watermark after it. Queued ones have not started and read from the watermark.
        const ongoing = running.has(entry) || entry.turn !== undefined;
        if (ongoing) entry.again = Math.min(entry.again ?? since, since);
        if (!entry.synced) {
          // Queued or waiting to retry: its next run reads from `since` (see owe).
          if (!ongoing) owe(peer, since);
          continue;
        }
        entry.synced = false;
        state.peers[peer] = Math.min(state.peers[peer] ?? since, since);
        queue.push(peer);
      }
      if (lowered) saveQuietly();
      drain();
    },

    status() {
      return { ...stats, watermarks: Object.keys(state.peers).length, last_contact: state.any ?? null };
    },

    async stop(): Promise<void> {
      stopped = true;
      abort.abort();
      clearInterval(ticker);
      for (const peer of [...connected.keys()]) this.peerDown(peer);
      clearTimeout(longCheck);
      // Aborted, a catch-up still ends on its own and saves how far it got: nothing is written after.
      await Promise.all([...running.values()].map((run) => run.done));
      await save().catch(() => {});
    },
  };
}

export type Sync = ReturnType<typeof createSync>;
