/**
 * How often a member beats, and how long its silence is tolerated, as the mesh grows.
 *
 * Every member gossips a heartbeat to every other, so each relay handles (members × copies per
 * message) heartbeats per interval: at the default 1 s, 25 idle relays spent 1.83 of this
 * machine's two cores, most of it on heartbeats. Up to SCALE_FROM members the configured interval
 * and timeout hold as they are; beyond, both grow with the member count (× members / SCALE_FROM),
 * so each relay hears about SCALE_FROM heartbeats per interval whatever the mesh size, and a member
 * is still declared dead after the same number of missed beats (timeout ÷ interval). A closed
 * connection or a leaving beat still drops a member at once.
 *
 * Each node counts the members it hears itself. Heartbeats travel by gossip, so in a connected
 * mesh every node hears every other and the counts agree, but for about one beat after members
 * join or leave. A node that just joined counts few and beats at the short interval (harmless:
 * more often than the others expect). When the count drops, this node keeps the longer timeout
 * for one more (longer) timeout, so members that still beat at the slower pace are not dropped
 * while their counts catch up.
 */
export const SCALE_FROM = 10;

export interface MemberCadence {
  /** Count the members (this node included) at `now`; called once per tick. */
  update(members: number, now: number): void;
  /** The factor the configured interval and timeout are multiplied by (≥ 1). */
  factor(): number;
  /** How often this node beats now. */
  beatEveryMs(): number;
  /** How long a member may stay silent before it is dropped. */
  timeoutMs(): number;
}

export function createMemberCadence(intervalMs: number, timeoutMs: number, scaleFrom = SCALE_FROM): MemberCadence {
  let current = 1;
  let peak = 1;
  let peakAt = Number.NEGATIVE_INFINITY;
  return {
    update(members, now) {
      current = Math.max(1, members / scaleFrom);
      if (current >= peak || now - peakAt > timeoutMs * peak) {
        peak = current;
        peakAt = now;
      }
    },
    factor: () => current,
    beatEveryMs: () => intervalMs * current,
    timeoutMs: () => timeoutMs * peak,
  };
}
