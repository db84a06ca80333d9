import { CURSOR_ZERO, cursorFloor } from '@anode/shared';

/**
 * How far a catch-up from one peer got before it failed, so the next attempt does not fetch again
 * what it already has. A catch-up over a relayed connection (capped by the relay server, 256 MiB
 * or 30 min by default) that needs more than the cap used to start from scratch on every
 * reconnect, since the watermark moves only on success: a node behind a NAT with a large gap
 * never finished.
 *
 * A catch-up reads the peer's topics in sorted order, each from `after` to its end, oldest first.
 * So an interrupted one has read every topic up to `through` whole (all that the peer held there
 * when the run started, as a watermark would claim for all topics), and `topic` up to `cursor`.
 * The next attempt asks those topics only from the run's start minus the lookback (what the peer
 * got since, as after any successful catch-up), and `topic` from `cursor` (or that, if earlier).
 */
export interface CatchUpProgress {
  /** The cursor the interrupted run asked every topic from. */
  after: string;
  /** When it started (ms). */
  started: number;
  /** The last topic it read to the end. */
  through?: string;
  /** The topic it was reading when it failed, read up to `cursor`. */
  topic?: string;
  cursor?: string;
}

/** What a running catch-up reports, and where it starts each topic. */
export interface CatchUpPlan {
  /** Where to start reading `topic`: the run's `after`, or later for what an earlier attempt read. */
  from(topic: string): string;
  /** `topic` was read to its end. */
  finished(topic: string): void;
  /** `topic` was read (and stored) up to `cursor`. */
  reached(topic: string, cursor: string): void;
  /**
   * `topic` was read whole by an earlier turn of this catch-up on this connection (it yielded its
   * slot): not asked again. Optional, so a plan without turns reads every topic.
   */
  skip?(topic: string): boolean;
  /** The listing starts after this topic: every topic up to it is skipped (see skip). */
  listAfter?: string;
}

const max = (a: string, b: string) => (a >= b ? a : b);
const min = (a: string, b: string) => (a <= b ? a : b);
const floor = (ms: number) => (ms <= 0 ? CURSOR_ZERO : cursorFloor(ms));

/**
 * The plan for a run from `after` started at `started`, resuming `previous` when that is usable
 * (it asked from no later than `after`: a resync that moved the watermark back needs every topic
 * again), and the progress to keep if this run fails (`current()`: this run's, once it got
 * farther than the previous one). `sameCatchUp`: `previous` is what an earlier turn of this
 * catch-up left on this connection (it yielded its slot, sync.ts): this run goes on from it, asking
 * no topic it read whole again and the one it was reading from its cursor, and `holds` (the time
 * its success holds everything up to) stays that turn's start, as for one long run. Otherwise (a
 * failed run, an earlier connection) each read topic is asked again from `previous.started` minus
 * the lookback: no gossip need have covered the time since.
 */
export function planCatchUp(
  after: string,
  started: number,
  lookbackMs: number,
  previous?: CatchUpProgress,
  sameCatchUp = false,
) {
  const resume = previous !== undefined && previous.after <= after ? previous : undefined;
  const since = resume ? max(after, floor(resume.started - lookbackMs)) : after;
  // A turn of the same catch-up is one run cut in two: it holds only what its first turn's start
  // holds. Not when a resync moved `after` back (no resume): every topic is read again then.
  const goOn = sameCatchUp && resume !== undefined;
  // Going on, it starts from what that turn kept (the topics read whole, the one it was reading):
  // a turn that yields inside that topic keeps them too, or the next asks every one again.
  const progress: CatchUpProgress = goOn ? { ...resume, after } : { after, started };
  const plan: CatchUpPlan = {
    from(topic) {
      if (!resume) return after;
      if (resume.through !== undefined && topic <= resume.through) return since;
      if (topic === resume.topic && resume.cursor !== undefined)
        return max(after, goOn ? resume.cursor : min(resume.cursor, since));
      return after;
    },
    skip: (topic) => goOn && resume?.through !== undefined && topic <= resume.through,
    listAfter: goOn ? resume.through : undefined,
    finished(topic) {
      progress.through = topic;
      progress.topic = undefined;
      progress.cursor = undefined;
    },
    reached(topic, cursor) {
      progress.topic = topic;
      progress.cursor = cursor;
    },
  };
  /** The progress to keep: this run's where it got farther than the one it resumed. */
  const current = (): CatchUpProgress | undefined => {
    if (!resume || farther(progress, resume)) return (progress.through ?? progress.topic) ? progress : resume;
    return resume;
  };
  return { plan, current, holds: progress.started };
}

/** Whether `a` read past `b` (topics in sorted order, then cursors within the topic being read). */
function farther(a: CatchUpProgress, b: CatchUpProgress): boolean {
  const at = (p: CatchUpProgress) => p.topic ?? p.through ?? '';
  if (at(a) !== at(b)) return at(a) > at(b);
  if (a.topic === undefined || b.topic === undefined) return a.topic === undefined && b.topic !== undefined;
  return (a.cursor ?? '') > (b.cursor ?? '');
}
