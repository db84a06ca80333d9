/**
 * The wait before try `attempt + 1` (attempt 0 is the first retry): `baseMs · 2^attempt`, capped
 * at `maxMs`, then jittered down to as little as half, so parties that failed together (relays
 * whose Paxos rounds collided, edges redialling one relay) do not retry together.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return ceiling / 2 + random() * (ceiling / 2);
}
