import { isSourceName } from '@anode/shared';
import type { Cluster } from '../cluster.ts';
import type { Hub } from '../hub/hub.ts';

/**
 * The source names this relay refuses to let anyone publish as (`hub.isReserved`: the sources it
 * or another member pulls), as a list a linked edge can check before it acks. The hub knows them
 * only as a predicate, so the candidates are read from where the sources component keeps them
 * (the names in this node's config, every member's config-file names shared as `reserved-sources`,
 * the admin API's changes shared as `sources`) and each is confirmed by the predicate: a name the
 * hub does not reserve is never sent.
 */
export function reservedSourceNames(
  configured: readonly unknown[],
  cluster: Pick<Cluster, 'shared'>,
  hub: Pick<Hub, 'isReserved'>,
): string[] {
  const candidates = new Set<string>();
  const add = (name: unknown) => {
    if (isSourceName(name)) candidates.add(name);
  };
  for (const raw of configured) add((raw as { name?: unknown } | null)?.name);
  const members = cluster.shared().get('reserved-sources')?.snapshot();
  for (const entry of Object.values(objectOr(members))) {
    const names = (entry as { names?: unknown } | null)?.names;
    if (Array.isArray(names)) names.forEach(add);
  }
  const admin = cluster.shared().get('sources')?.snapshot() as { changes?: unknown } | undefined;
  Object.keys(objectOr(admin?.changes)).forEach(add);
  return [...candidates].filter((name) => hub.isReserved(name)).sort();
}

const objectOr = (value: unknown): Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
