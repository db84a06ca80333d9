// Test helpers for the hub's tests: a hub on a store (an in-memory embedded one by default) and
// a subscriber that records the message ids it was sent.
import { createHybridClock, type Envelope, type HybridClock, type MessageStore } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { createSqliteStore } from '../storage/embedded/sqlite-store.ts';
import { createHub, type Subscriber } from './hub.ts';

export const memoryStore = () =>
  createSqliteStore({ dataDir: '', memory: true, retention: { maxAgeMs: 0, maxMessages: 0 } });

export const testHub = (
  store: MessageStore,
  clock: HybridClock = createHybridClock('nodelocal0'),
  options: {
    remoteInputs?: boolean;
    onUnstored?: (envelopes: Envelope[]) => void;
    storeShared?: boolean;
    startedAt?: number;
  } = {},
) =>
  createHub({
    store,
    clock,
    metrics: createMetrics(),
    log: createLogger('silent'),
    maxMessageBytes: 1024 * 1024,
    ...options,
  });

export function recorder(id = `sub-${Math.random()}`): Subscriber & { ids: () => string[] } {
  const frames: string[] = [];
  return {
    id,
    send: (frame) => (frames.push(frame), true),
    overflow() {},
    ids: () =>
      frames
        .map((f) => JSON.parse(f) as { op: string; id?: string })
        .filter((f) => f.op === 'msg')
        .map((f) => f.id as string),
  };
}

/** A cursor minted at `ms` by `node` (10 characters), as a hybrid clock writes it. */
export const cursorAt = (ms: number, node: string) => `${ms.toString(16).padStart(12, '0')}0000-${node}`;

/** An envelope from another node: id, topic, minted at `ms` by `node`. */
export const remote = (id: string, topic: string, ms: number, node: string): Envelope => ({
  id,
  topic,
  cursor: cursorAt(ms, node),
  source: 's',
  ts: ms,
  data: id,
});
