// Test support (not a test): a topic object as a resume sees it (hub-core.ts deliver and accept
// over the real hub store on node:sqlite, the real heard log) and a client socket resuming on it.
import { DatabaseSync } from 'node:sqlite';
import { compareCursors, createHybridClock, type Envelope } from '@anode/shared';
import { openSchema } from './hub-schema.ts';
import { seedClock } from './clock-seed.ts';
import { createHeardLog } from './heard.ts';
import { createHubStore } from './hub-store.ts';
import { createSubscriptions } from './subscriptions.ts';

/**
 * A stand-in for DurableObjectStorage on node:sqlite (the same SQLite a Durable Object runs): `sql`
 * and `transactionSync` only, counting the bodies it hands out (`reads`).
 */
export function storageOn(db: DatabaseSync) {
  const reads = { bodies: 0 };
  const storage = {
    sql: {
      exec(query: string, ...bindings: (string | number)[]) {
        if (query.includes(';') && bindings.length === 0) {
          db.exec(query);
          return Object.assign([][Symbol.iterator](), { toArray: () => [] });
        }
        const statement = db.prepare(query);
        if (statement.columns().length === 0) {
          // A write runs at once, as workerd's exec does; node:sqlite's iterate would wait to be read.
          statement.run(...bindings);
          return Object.assign([][Symbol.iterator](), { toArray: () => [] });
        }
        const rows = statement.iterate(...bindings);
        const counted = (function* () {
          for (const row of rows as Iterable<Record<string, unknown>>) {
            if ('body' in row) reads.bodies += 1;
            yield { ...row };
          }
        })();
        return Object.assign(counted, { toArray: () => [...counted] });
      },
      databaseSize: 0,
    },
    transactionSync<T>(fn: () => T): T {
      db.exec('BEGIN');
      try {
        const result = fn();
        db.exec('COMMIT');
        return result;
      } catch (error) {
        db.exec('ROLLBACK');
        throw error;
      }
    },
  };
  return { storage: storage as unknown as DurableObjectStorage, reads };
}

/** A hub store on a fresh database; `seed` writes rows first (the store counts what it holds when made). */
export function newStore(ringSize: number, seed?: (db: DatabaseSync) => void, lateMemory = 10_000) {
  const db = new DatabaseSync(':memory:');
  openSchema((query) => {
    if (query.includes(';')) {
      db.exec(query);
      return [];
    }
    return db.prepare(query).all() as { name: string }[];
  });
  seed?.(db);
  const { storage, reads } = storageOn(db);
  const store = createHubStore(storage, { ringSize, keyedMemory: 1_000, lateMemory });
  return { db, store, reads };
}

/** The object evicted and woken: a new store on the same database (then a new objectOn). */
export const wake = (db: DatabaseSync, ringSize = 1000) =>
  createHubStore(storageOn(db).storage, { ringSize, keyedMemory: 1_000, lateMemory: 10_000 });

/**
 * The object (hub-core.ts) as far as a resume sees it: its clock (seeded from the store as hub-core
 * seeds it), its heard log (heard.ts), and deliver/accept written as hub-core writes them (store
 * first, then the log).
 */
export function objectOn(store: ReturnType<typeof createHubStore>, clockNode = 'e1', maxBytes = 8 * 1024 * 1024) {
  const clock = createHybridClock(clockNode);
  seedClock(clock, store.meta.get('clock'), store.newest(), store.meta.get('handed')); // as hub-core, on each wake
  const heard = createHeardLog(maxBytes);
  const fanOut = (envelope: Envelope, body: string) => heard.add(envelope, body);
  return {
    clock,
    heard,
    hear: (needed?: Parameters<typeof heard.listen>[0]) => heard.listen(needed),
    /** hub-core's deliver (a message from the mesh). */
    deliver(envelope: Envelope) {
      const body = JSON.stringify(envelope);
      clock.observe(envelope.cursor);
      if (store.receive(envelope, body)) fanOut(envelope, body);
    },
    /** hub-core's accept of one publish (linked). */
    accept(envelope: Envelope) {
      const body = JSON.stringify(envelope);
      store.accept(envelope, body, true);
      fanOut(envelope, body);
    },
  };
}

type Link = {
  late?: Envelope[];
  /** When set, the relay's answer to `late` waits for this. */
  lateWait?: Promise<void>;
  history?: (frame: { after?: string }) => Promise<{ messages: Envelope[]; next: string | null }>;
};

/** One client socket subscribing with `after` on the object; what it was sent. */
export function resume(
  store: ReturnType<typeof createHubStore>,
  object: ReturnType<typeof objectOn>,
  after: string,
  maxSendBufferBytes: number,
  link: Link = {},
  /** False once the client's connection is gone: what is sent then never reaches it (send fails). */
  connected: () => boolean = () => true,
) {
  const state = { gen: 0, subscribed: false, live: false };
  const frames: string[] = [];
  const clients = {
    state: () => state,
    update: (_ws: unknown, change: Partial<typeof state>) => Object.assign(state, change),
    send: (_ws: unknown, frame: string) => (connected() ? (frames.push(frame), true) : false),
    frame: (_ws: unknown, frame: object) => void (connected() && frames.push(JSON.stringify(frame))),
    close: (_ws: unknown, reason: string) => void frames.push(`close ${reason}`),
    error: (_ws: unknown, error: Error) =>
      void frames.push(`error ${(error as { code?: string }).code} ${error.message}`),
  };
  const subscriptions = createSubscriptions({
    clients,
    store,
    clock: object.clock,
    link: {
      request: async (frame: { op: string; after?: string }) =>
        frame.op === 'late'
          ? (await link.lateWait, { messages: link.late ?? [], next: null })
          : ((await link.history?.(frame)) ?? { messages: [], next: null }),
    },
    config: { MAX_SEND_BUFFER_BYTES: maxSendBufferBytes },
    topic: 't',
    ctx: { waitUntil: () => {} },
    linked: true,
    hear: object.hear,
  } as unknown as Parameters<typeof createSubscriptions>[0]);
  const ws = {} as WebSocket;
  const settled = subscriptions.subscribe(ws, after, 'r');
  const view = () => {
    const messages = frames
      .filter((f) => f.startsWith('{"op":"msg"'))
      .map((f) => JSON.parse(f) as Envelope & { op: 'msg' });
    return {
      frames,
      /** The messages it was sent, as frames (`op` and all), in order. */
      messages,
      ids: messages.map((m) => m.id),
      /** The client library's resume point: the newest cursor it got. */
      last: messages.map((m) => m.cursor).reduce((a, b) => (compareCursors(a, b) >= 0 ? a : b), after),
    };
  };
  return { subscriptions, ws, state, ...view(), settled: async () => (await settled, view()) };
}

export const envelope = (id: string, cursor: string, size = 1000): Envelope =>
  ({ id, topic: 't', cursor, source: 's', ts: 1, data: 'x'.repeat(size) }) as Envelope;

/**
 * A client's cursor older than the object's ring, so a resume from it pages the relay's history:
 * the relay's clock (`relayNow`: its wall clock) mints `after`, then `older` (two messages it
 * stored before the ring starts), then the ring's `floor`; the object's clock is past the floor.
 * `logBytes`: the object's heard log bound (MAX_SEND_BUFFER_BYTES).
 */
export function olderThanRing(options: { ringSize?: number; relayNow?: () => number; logBytes?: number } = {}) {
  const { db, store } = newStore(options.ringSize ?? 1000);
  const relay = createHybridClock('relay1', options.relayNow);
  const after = relay.next();
  const older = [1, 2].map((i) => envelope(`H${i}`, relay.next()));
  const floor = relay.next();
  store.meta.set('floor', floor);
  const object = objectOn(store, 'eedge0', options.logBytes);
  object.clock.observe(floor);
  return { db, store, object, relay, after, older, floor };
}
