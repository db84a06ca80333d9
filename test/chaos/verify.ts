import { compareCursors } from '@anode/shared';
import type { FaultRecord } from './faults.ts';
import type { Acked, Subscriber } from './load.ts';

/**
 * The final checks of a chaos run, over what the publishers, subscribers and stores report.
 * Each returns the problems it found (empty when the guarantee held).
 */
export const originOf = (cursor: string) => cursor.slice(cursor.indexOf('-') + 1);

/** Every acked id of each topic is in `stored` (one replica's or the shared store's ids per topic). */
export function missingFromStore(acked: Acked[], stored: Map<string, Set<string>>): Acked[] {
  return acked.filter((a) => !stored.get(a.topic)?.has(a.id));
}

/** Replicas hold the same ids per topic. */
export function divergence(replicas: Map<string, Set<string>>[]): string[] {
  const problems: string[] = [];
  const topics = new Set(replicas.flatMap((r) => [...r.keys()]));
  for (const topic of topics) {
    const union = new Set(replicas.flatMap((r) => [...(r.get(topic) ?? [])]));
    replicas.forEach((r, i) => {
      const size = r.get(topic)?.size ?? 0;
      if (size !== union.size) problems.push(`replica ${i} holds ${size} of ${union.size} ids of ${topic}`);
    });
  }
  return problems;
}

export interface SubscriberReport {
  name: string;
  missing: number;
  duplicates: number;
  late: number;
  dropped: number;
  firstProblems: string[];
}

/**
 * Exactly once after client dedup, everything acked of its topics. Order per (topic, origin) is
 * measured, not required: a message the live gossip path missed during a fault (a partition, a
 * killed origin that acked before gossiping, a mesh still forming) reaches other nodes later
 * through catch-up and is fanned out then, after newer ones of the same origin. Those are
 * counted as `late`.
 */
export function checkSubscriber(sub: Subscriber, acked: Acked[]): SubscriberReport {
  const problems: string[] = [];
  const counts = new Map<string, number>();
  for (const d of sub.delivered) counts.set(d.id, (counts.get(d.id) ?? 0) + 1);
  const duplicates = [...counts.values()].filter((c) => c > 1).length;
  const missingIds = acked.filter((a) => sub.covers(a.topic) && !counts.has(a.id));
  for (const m of missingIds.slice(0, 3))
    problems.push(`missing ${m.topic} ${m.id} (cursor ${m.cursor}, via ${m.via})`);
  let late = 0;
  const last = new Map<string, string>();
  for (const d of sub.delivered) {
    const key = `${d.topic} ${originOf(d.cursor)}`;
    const previous = last.get(key);
    if (previous !== undefined && compareCursors(d.cursor, previous) <= 0) {
      late += 1;
    } else {
      last.set(key, d.cursor);
    }
  }
  return {
    name: sub.name,
    missing: missingIds.length,
    duplicates,
    late,
    dropped: sub.raw() - sub.delivered.length,
    firstProblems: problems,
  };
}

/** After each heal a probe is published; how long until each subscriber saw it. */
export function longestWaitAfterHeal(
  probes: { fault: FaultRecord; id: string }[],
  subscribers: Subscriber[],
): { ms: number; what: string } {
  let worst = { ms: 0, what: 'none' };
  for (const probe of probes) {
    for (const sub of subscribers) {
      const seen = sub.delivered.findLast((d) => d.id === probe.id);
      if (!seen) continue;
      const ms = seen.at - probe.fault.healedAt;
      if (ms > worst.ms) worst = { ms, what: `${sub.name} after ${probe.fault.kind} ${probe.fault.detail}` };
    }
  }
  return worst;
}

export function table(rows: [string, string | number][]): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
}
