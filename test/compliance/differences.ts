import assert from 'node:assert/strict';
import { bearer, connect, errFor, tokenFor } from './support.ts';
import type { Target, TargetName } from './targets.ts';

/**
 * Where a target does not answer as PROTOCOL.md says, declared per case with its reason.
 * - `gap`: a divergence to fix (not forced by any platform). The case still runs, as a `todo`: its
 *   failure is reported but does not fail the run, and a pass shows the gap is closed (then delete
 *   the entry).
 * - `platform`: the platform forces a different answer. The case does not run there; `instead`
 *   checks the declared answer, so the difference itself is held to.
 * Nothing else may differ between targets.
 */
export type Declared =
  { kind: 'gap'; reason: string } | { kind: 'platform'; reason: string; instead(target: Target): Promise<void> };

const PATTERNS_NEED_A_RELAY: Declared = {
  kind: 'platform',
  reason:
    'Durable Objects cannot be enumerated or watched as a set: no object at the edge sees every topic, so a ' +
    'standalone edge cannot match a pattern against topics it has never heard of (a registry object on every ' +
    'publish would serialize the whole edge through one object). The edge serves patterns through a relay; ' +
    'standing alone it refuses them with unavailable.',
  async instead(target) {
    const sock = await connect(`${target.wsUrl}/v1/ws`, bearer(await tokenFor('patterned')));
    const err = await errFor(sock, { op: 'sub', topic: 'pt.*' }, 'p');
    assert.equal(err.code, 'unavailable');
    assert.match(err.message, /relay/);
    sock.close();
  },
};

export const DECLARED: Record<TargetName, Record<string, Declared>> = {
  relay: {},
  edge: {
    'a pattern subscription receives every matching topic, and resumes from a cursor': PATTERNS_NEED_A_RELAY,
  },
  'edge-linked': {},
};
