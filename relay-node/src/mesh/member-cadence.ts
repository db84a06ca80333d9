/**
 * How often a member beats, and how long its silence is tolerated, as the mesh grows.
 *
 * Every member gossips a heartbeat to every other, so each relay handles (members × copies per
 * message) heartbeats per interval: at the default 1 s, 25 idle relays spent most of this
 * machine's two cores on them. Up to SCALE_FROM members a node beats every configured interval;
 * beyond, every `interval × members / SCALE_FROM` rounded to whole intervals (it beats on its
 * ticks, one per interval), so each relay hears about SCALE_FROM heartbeats per interval whatever
 * the mesh size.
 *
 * Each beat says when the next one comes: `digests["~beat_ms"]`, the sender's interval until its
 * next beat, in milliseconds (a decimal string). A receiver drops a silent member after the same
 * number of missed beats as the configured timeout allows (timeout ÷ interval, 5 by default) of
 * that member's own announced interval, never sooner than the configured timeout. So members
 * need not agree on the member count; but an interval over BELIEVED_FACTOR times what this node
 * would announce itself is believed only that far (a buggy member announcing hours would
 * otherwise be kept, and hold back every joining node's settling, for five of them). A relay older than this (no `~beat_ms`) expects a beat
 * every interval and drops a member after the fixed timeout: while any member it hears does not
 * announce, a node keeps the configured interval. A closed connection or a leaving beat still
 * drops a member at once.
 */
export const SCALE_FROM = 10;
/** `mesh_member_interval_ms` by default (mesh-config.ts). */
export const DEFAULT_MEMBER_INTERVAL_MS = 1_000;
/** The digests entry a heartbeat announces its sender's next interval in (old relays ignore it). */
export const BEAT_DIGEST = '~beat_ms';
/** Longest interval announced or believed. */
export const MAX_BEAT_MS = 10 * 60_000;
/** An announced interval is believed up to this many times what this node would announce. */
export const BELIEVED_FACTOR = 4;

export interface CadenceOptions {
  intervalMs: number;
  timeoutMs: number;
  /** Members up to which the configured interval holds (tests lower it). */
  scaleFrom?: number;
}

/**
 * The interval until this node's next beat: `members` it hears (itself included), and whether
 * every one of them announces its own interval (else the configured interval, for older relays).
 */
export function nextBeatMs(options: CadenceOptions, members: number, allAnnounce: boolean): number {
  if (!allAnnounce) return options.intervalMs;
  const ticks = Math.max(1, Math.round(members / (options.scaleFrom ?? SCALE_FROM)));
  return Math.max(options.intervalMs, Math.min(ticks * options.intervalMs, MAX_BEAT_MS));
}

/**
 * The interval believed of a member that announced `beatMs` (undefined: an older relay, which
 * beats every configured interval), this node hearing `members` (itself included).
 */
export function believedBeatMs(options: CadenceOptions, beatMs: number | undefined, members: number): number {
  if (beatMs === undefined) return options.intervalMs;
  return Math.min(beatMs, BELIEVED_FACTOR * nextBeatMs(options, members, true));
}

/** How long a member may stay silent, given its believed interval (believedBeatMs). */
export function memberTimeoutMs(options: CadenceOptions, believedMs: number): number {
  return Math.max(options.timeoutMs, (options.timeoutMs / options.intervalMs) * believedMs);
}

/** The announced interval in a heartbeat's digests: undefined when absent or not a positive integer. */
export function announcedBeatMs(digests: Readonly<Record<string, string>>): number | undefined {
  const text = digests[BEAT_DIGEST];
  if (text === undefined || !/^[1-9][0-9]{0,9}$/.test(text)) return undefined;
  return Math.min(Number(text), MAX_BEAT_MS);
}

/**
 * Whether a beat of `beatMs` scales an interval the operator raised by hand: both scalings then
 * apply (docs/sources.md says to go back to the defaults), worth one warning.
 */
export function scalesRaisedInterval(options: CadenceOptions, beatMs: number): boolean {
  return options.intervalMs > DEFAULT_MEMBER_INTERVAL_MS && beatMs > options.intervalMs;
}
