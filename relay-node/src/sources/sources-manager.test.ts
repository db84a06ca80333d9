import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UnavailableError } from '@anode/shared';
import { createLogger } from '../logger.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';
import type { DriverIo, SourceKind } from './source-kind.ts';
import type { RuntimeDeps } from './source-runtime.ts';
import { createScheduler } from './scheduler.ts';
import { createSourceStore, createVersionClock, mergeSources, SourceWriteError } from './source-store.ts';
import { createSourcesManager, TOMBSTONE_TTL_MS } from './sources-manager.ts';

const DAY = 24 * 60 * 60 * 1000;
const dirs: string[] = [];
const stops: (() => void)[] = [];
after(async () => {
  for (const stop of stops) stop();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

const source = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  kind: 'http',
  url: `http://127.0.0.1:9/feeds/${name}`,
  interval_ms: 60_000,
  topic: `t.${name}`,
  headers: { authorization: 'Bearer 0123456789abcdef' },
  ...extra,
});

type Manager = ReturnType<typeof createSourcesManager>;
type Store = ReturnType<typeof createSourceStore>;

/** A manager over its own data folder, on a clock the test moves; unless `owner`, it owns no source, so none is pulled. */
async function node(
  id: string,
  clock: { now: number },
  configuredNames?: ReadonlySet<string>,
  othersConfigured: ReadonlySet<string> = new Set(),
  owner = false,
  wrap: (store: Store) => Store = (store) => store,
) {
  const dir = await mkdtemp(join(tmpdir(), 'anode-sources-manager-'));
  dirs.push(dir);
  const path = join(dir, 'sources.json');
  const store = wrap(createSourceStore(path));
  const scheduler = createScheduler({ concurrency: 1 });
  const manager = createSourcesManager({
    kinds: BUILTIN_KINDS,
    steps: new Map(),
    scheduler,
    ownership: { isOwner: () => owner, ownerOf: () => (owner ? id : 'elsewhere'), onChange: () => () => {} },
    store,
    changes: await store.load(),
    version: createVersionClock(id, () => clock.now),
    now: () => clock.now,
    configuredNames,
    keepTombstone: (name) => othersConfigured.has(name),
    log: createLogger('silent'),
    deps: { ingest: async () => {}, onError: () => {} },
  });
  manager.start();
  stops.push(() => {
    manager.stop();
    scheduler.stop();
  });
  /** What a restart would load. */
  const reload = async () => mergeSources([], await createSourceStore(path).load()).map((raw) => raw.name);
  return { manager, dir, path, reload };
}

/**
 * A double of the file store (a full disk cannot be made on demand) whose writes fail (with `message`) while `when()` says so, each after the writes before
 * it, in order, as the real store finishes them; `meanwhile` runs as one fails.
 */
const failingWhen =
  (when: () => boolean, message = 'ENOSPC: no space left on device (test double)', meanwhile?: () => void) =>
  (store: Store): Store => {
    let last: Promise<unknown> = Promise.resolve();
    return {
      ...store,
      write(state, names) {
        const done = when()
          ? last.then(() => {
              meanwhile?.();
              // What the store throws on an OS error (code first in the message, as Node's).
              const code = message.split(':')[0] ?? 'EIO';
              throw new SourceWriteError('sources.log', Object.assign(new Error(message), { code }));
            })
          : store.write(state, names);
        last = done.catch(() => {});
        return done;
      },
    };
  };

describe('sources manager: writing admin changes', () => {
  it('appends each change instead of rewriting every source, and a restart finds them all', async () => {
    const { manager, path, reload } = await node('nodea', { now: 1_000 });
    const snapshots = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      await manager.create(source(`s${i}`));
      const file = await stat(path, { bigint: true }).catch(() => undefined);
      snapshots.add(`${file?.ino}/${file?.mtimeNs}`);
    }
    // sources.json is rewritten only when the journal outgrows it: a few times, not once per change.
    assert.ok(snapshots.size <= 12, `sources.json rewritten ${snapshots.size} times`);
    const text = await readFile(path, 'utf8');
    assert.ok(!text.includes('\n '), 'not pretty-printed');
    assert.equal((await reload()).length, 1_000);
  });

  it('answers a change only once it is on disk, and writes the changes made meanwhile together', async () => {
    const { manager, dir, reload } = await node('nodea', { now: 1_000 });
    await manager.create(source('one'));
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const answer = (await manager.update('one', { interval_ms: 1_000 + i }, true)) as { interval_ms?: number };
        // Answered with its change or a later one (one overtaken answers with the one that overtook it).
        assert.ok((answer.interval_ms ?? 0) >= 1_000 + i, `${answer.interval_ms} for ${1_000 + i}`);
        // Whoever is answered finds the change, or a later one, in the files.
        const state = await createSourceStore(join(dir, 'sources.json')).load();
        assert.ok((state.changes.one?.interval_ms as number) >= 1_000 + i);
      }),
    );
    const journal = (await readFile(join(dir, 'sources.log'), 'utf8')).trim().split('\n');
    assert.ok(journal.length <= 3, `${journal.length} journal lines for 51 changes`);
    const state = await createSourceStore(join(dir, 'sources.json')).load();
    assert.equal(state.changes.one?.interval_ms, 1_049);
    assert.deepEqual(await reload(), ['one']);
  });
});

describe('sources manager: tombstones of deleted sources', () => {
  it('are dropped after the TTL, and a stale member’s copy does not bring the source back', async () => {
    const clock = { now: 10 * DAY };
    const a = await node('nodea', clock);
    const b = await node('nodeb', clock);
    await a.manager.create(source('gone'));
    await a.manager.create(source('kept'));
    await b.manager.shared.merge(structuredClone(a.manager.shared.snapshot()));
    assert.ok(b.manager.has('gone'));

    // b misses the delete (down, or cut off) for longer than the TTL.
    clock.now += 1_000;
    await a.manager.remove('gone');
    const deletedAt = clock.now;
    clock.now = deletedAt + TOMBSTONE_TTL_MS - 1;
    const changes = (s: unknown) => (s as { changes: Record<string, unknown> }).changes;
    assert.equal(changes(a.manager.shared.snapshot()).gone, null, 'kept within the TTL');

    clock.now = deletedAt + TOMBSTONE_TTL_MS + 1;
    const digest = a.manager.shared.digest();
    assert.ok(!('gone' in changes(a.manager.shared.snapshot())), 'dropped from the snapshot');
    await a.manager.create(source('later')); // written after the rewrite that dropped it
    assert.deepEqual((await a.reload()).sort(), ['kept', 'later']);
    assert.ok(!(await readFile(a.path, 'utf8')).includes('"gone"'), 'dropped from the file');
    assert.ok(!(await readFile(join(a.dir, 'sources.log'), 'utf8')).includes('"gone"'));

    // The stale member's snapshot still has the source, older than the dropped tombstone: ignored.
    await b.manager.create(source('fresh')); // made on b after the delete: taken
    await a.manager.shared.merge(structuredClone(b.manager.shared.snapshot()));
    assert.ok(!a.manager.has('gone'));
    assert.ok(!('gone' in changes(a.manager.shared.snapshot())));
    assert.ok(a.manager.has('fresh'));
    assert.notEqual(a.manager.shared.digest(), digest);

    // A new member still learns every source, however old.
    const c = await node('nodec', clock);
    await c.manager.shared.merge(structuredClone(a.manager.shared.snapshot()));
    assert.deepEqual(
      c.manager
        .list()
        .map((s) => s.status.name)
        .sort(),
      ['fresh', 'kept', 'later'],
    );

    // The limit: the stale member keeps its copy until it is deleted there; that delete spreads.
    await b.manager.shared.merge(structuredClone(a.manager.shared.snapshot()));
    assert.ok(b.manager.has('gone'));
    await b.manager.remove('gone');
    await a.manager.shared.merge(structuredClone(b.manager.shared.snapshot()));
    await b.manager.shared.merge(structuredClone(a.manager.shared.snapshot()));
    assert.equal(a.manager.shared.digest(), b.manager.shared.digest());
  });

  it('taken from a member already past the TTL here, are dropped whole: the digest agrees with a member that never had them', async () => {
    // A member whose clock is days behind (or that was away): its tombstone is older than the TTL here.
    const behind = { now: 2 * DAY };
    const c = await node('nodec', behind);
    await c.manager.create(source('gone'));
    behind.now += 1_000;
    await c.manager.remove('gone');
    const clock = { now: 2 * DAY + TOMBSTONE_TTL_MS + DAY };
    const a = await node('nodea', clock);
    const b = await node('nodeb', clock);
    await a.manager.shared.merge(structuredClone(c.manager.shared.snapshot()));
    const changes = (s: unknown) => (s as { changes: Record<string, unknown> }).changes;
    assert.ok(!('gone' in changes(a.manager.shared.snapshot())), 'not shared after it was dropped');
    // Before, a ghost entry stayed in what is shared: the digests never agreed, and the members
    // fetched each other's snapshot at every beat.
    assert.equal(a.manager.shared.digest(), b.manager.shared.digest());
  });

  it('keep the tombstone of a config-file source, or the file would bring it back', async () => {
    const clock = { now: 10 * DAY };
    const a = await node('nodea', clock, new Set(['filed']));
    a.manager.load([source('filed')]);
    await a.manager.remove('filed');
    clock.now += TOMBSTONE_TTL_MS * 2;
    await a.manager.create(source('other'));
    const state = await createSourceStore(a.path).load();
    assert.equal(state.changes.filed, null);
    assert.deepEqual(
      mergeSources([source('filed')], state).map((raw) => raw.name),
      ['other'],
    );
  });

  it('keep a config-file source’s tombstone on every member, so digests agree and a new member with the file learns the delete', async () => {
    const clock = { now: 10 * DAY };
    const a = await node('nodea', clock, new Set(['filed'])); // in a's config file
    const b = await node('nodeb', clock, undefined, new Set(['filed'])); // not in b's; a shares its names
    a.manager.load([source('filed')]);
    await a.manager.remove('filed');
    await b.manager.shared.merge(structuredClone(a.manager.shared.snapshot()));
    clock.now += TOMBSTONE_TTL_MS + 1;
    for (let round = 0; round < 3; round++) {
      await a.manager.shared.merge(structuredClone(b.manager.shared.snapshot()));
      await b.manager.shared.merge(structuredClone(a.manager.shared.snapshot()));
    }
    assert.equal(a.manager.shared.digest(), b.manager.shared.digest(), 'converged after the TTL too');
    // A member joining with the same config file and an empty data folder.
    const d = await node('noded', clock, new Set(['filed']));
    d.manager.load([source('filed')]);
    assert.ok(d.manager.has('filed'));
    await d.manager.shared.merge(structuredClone(b.manager.shared.snapshot()));
    assert.ok(!d.manager.has('filed'), 'the deleted source does not come back on the new member');
    assert.equal(d.manager.shared.digest(), a.manager.shared.digest());
  });
});

describe('sources manager: changes of one source at once', () => {
  let polls = 0;
  const upstream = createServer((_request, response) => {
    polls += 1;
    response.setHeader('content-type', 'application/json');
    response.end('[]');
  });
  let feed: string;
  before(async () => {
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    feed = `http://127.0.0.1:${(upstream.address() as { port: number }).port}/x`;
  });
  after(() => upstream.close());

  const pollsWithin = async (ms: number) => {
    const start = polls;
    await new Promise((resolve) => setTimeout(resolve, ms));
    return polls - start;
  };

  // Each case: the source as created, and the change sent together with its delete.
  const cases = {
    'an update': { paused: false, change: (m: Manager) => m.update('s1', { interval_ms: 30 }, true) },
    'a resume': { paused: true, change: (m: Manager) => m.setPaused('s1', false) },
  };
  for (const [name, { paused, change }] of Object.entries(cases)) {
    it(`a delete sent with ${name} leaves no source polling`, async () => {
      const { manager, path } = await node('nodea', { now: 1_000 }, undefined, new Set(), true);
      await manager.create(source('s1', { url: feed, interval_ms: 20, paused }));
      const [changed, deleted] = await Promise.allSettled([change(manager), manager.remove('s1')]);
      assert.equal(deleted.status, 'fulfilled');
      // The change was written first, then the delete: its answer is the source as it is now.
      assert.equal(changed.status, 'rejected');
      assert.match(String(changed.reason), /SourceNotFoundError: source s1 was deleted meanwhile/);
      assert.ok(!manager.has('s1'));
      assert.equal((await createSourceStore(path).load()).changes.s1, null);
      assert.equal(await pollsWithin(300), 0, 'polls after the delete');
    });

    it(`${name} sent while a delete is written is refused (404), and the source stays deleted after a restart`, async () => {
      const { manager, path, reload } = await node('nodea', { now: 1_000 }, undefined, new Set(), true);
      await manager.create(source('s1', { url: feed, interval_ms: 20, paused }));
      const deleting = manager.remove('s1'); // accepted, not yet on disk
      const [changed, deleted] = await Promise.allSettled([change(manager), deleting]);
      assert.equal(deleted.status, 'fulfilled');
      assert.equal(changed.status, 'rejected');
      assert.match(String(changed.reason), /SourceNotFoundError: no source named s1/);
      assert.ok(!manager.has('s1'));
      // The journal's last word on s1 is the delete: a restart does not bring it back.
      const journal = (await readFile(join(path, '..', 'sources.log'), 'utf8')).trim().split('\n');
      assert.equal((JSON.parse(journal.at(-1) ?? '{}') as { change?: unknown }).change, null);
      assert.deepEqual(await reload(), []);
      assert.equal(await pollsWithin(300), 0, 'polls after the delete');
    });
  }

  /** Every write to `dir`'s sources.log fails (EISDIR: a folder in its place) until the returned function is called. */
  const breakJournal = async (dir: string) => {
    const journal = join(dir, 'sources.log');
    await rename(journal, `${journal}.aside`);
    await mkdir(journal);
    return async () => {
      await rmdir(journal);
      await rename(`${journal}.aside`, journal);
    };
  };

  it('a delete whose write fails is undone: the source runs again, and can still be updated and deleted', async () => {
    const { manager, dir, path, reload } = await node('nodea', { now: 1_000 }, undefined, new Set(), true);
    await manager.create(source('s1', { url: feed, interval_ms: 20 }));
    const repair = await breakJournal(dir);
    const failed = (await manager.remove('s1').catch((error: unknown) => error)) as Error;
    assert.match(String(failed), /EISDIR/);
    // Before, the failed delete stayed the newest change: its runtime stopped, every later change 404.
    assert.ok(manager.has('s1'));
    assert.notEqual(manager.get('s1').status.state, 'paused');
    assert.ok((await pollsWithin(300)) > 0, 'polls again after the failed delete');
    await repair();
    assert.equal(((await manager.update('s1', { interval_ms: 25 }, true)) as { interval_ms?: number }).interval_ms, 25);
    assert.equal((await createSourceStore(path).load()).changes.s1?.interval_ms, 25);
    await manager.remove('s1');
    assert.deepEqual(await reload(), []);
    assert.equal(await pollsWithin(300), 0, 'polls after the delete');
    // The 503's message: the cause (OS error, file) and what to do.
    assert.ok(failed instanceof UnavailableError, String(failed));
    assert.match(
      failed.message,
      /^the change of source s1 was not saved and is undone: cannot write \S+sources\.log: EISDIR: illegal operation on a directory; retry once that is fixed$/,
    );
  });

  it('a PATCH whose write fails is undone: the next PATCH does not carry it, on disk neither', async () => {
    const { manager, dir, path, reload } = await node('nodea', { now: 1_000 }, undefined, new Set(), true);
    await manager.create(source('s1', { url: feed, interval_ms: 20 }));
    const repair = await breakJournal(dir);
    // Two sent at once are written together, and fail together.
    const failed = await Promise.allSettled([
      manager.update('s1', { topic: 't.failed' }, true),
      manager.update('s1', { dedup_window: 7 }, true),
    ]);
    assert.deepEqual(
      failed.map((one) => one.status),
      ['rejected', 'rejected'],
    );
    assert.equal(manager.get('s1').status.topic, 't.s1');
    await repair();
    const answer = (await manager.update('s1', { interval_ms: 25 }, true)) as Record<string, unknown>;
    assert.equal(answer.topic, 't.s1');
    assert.equal(answer.dedup_window, undefined);
    assert.equal(answer.interval_ms, 25);
    // What a restart loads is what was answered.
    const { s1 } = (await createSourceStore(path).load()).changes;
    assert.deepEqual(s1, { ...source('s1', { url: feed }), interval_ms: 25, name: 's1' });
    assert.deepEqual(await reload(), ['s1']);
    await manager.remove('s1'); // polls no more in the next cases
  });

  it('a create sent while a delete is written, whose own write fails, leaves the source deleted', async () => {
    let failing = false;
    const faulty = failingWhen(() => failing);
    const { manager, reload } = await node('nodea', { now: 1_000 }, undefined, new Set(), true, faulty);
    await manager.create(source('s1', { url: feed, interval_ms: 20 }));
    const deleting = manager.remove('s1');
    await new Promise((resolve) => setImmediate(resolve)); // the delete's write has started
    assert.ok(manager.has('s1'), 'the delete is still being written');
    failing = true;
    const [created, deleted] = await Promise.allSettled([manager.create(source('s1', { url: feed })), deleting]);
    assert.equal(deleted.status, 'fulfilled');
    assert.equal(created.status, 'rejected');
    assert.match(String(created.reason), /ENOSPC/);
    // Before, the delete's runtime stayed (stopped) under the failed create's definition.
    assert.ok(!manager.has('s1'));
    assert.deepEqual(await reload(), []);
    failing = false;
    await manager.create(source('s1', { url: feed, interval_ms: 20 })); // 201, not 409
    assert.ok((await pollsWithin(300)) > 0);
    await manager.remove('s1');
  });

  it('a create whose write fails is undone: no source, and the name is free', async () => {
    let failing = true;
    const faulty = failingWhen(() => failing, 'EACCES: permission denied (test double)');
    const { manager, reload } = await node('nodea', { now: 1_000 }, undefined, new Set(), false, faulty);
    await assert.rejects(manager.create(source('s1')), /EACCES/);
    assert.ok(!manager.has('s1'));
    const { changes: shared } = manager.shared.snapshot() as { changes: object };
    assert.equal(Object.hasOwn(shared, 's1'), false, 'not shared');
    failing = false;
    await manager.create(source('s1'));
    assert.deepEqual(await reload(), ['s1']);
  });
});

describe('sources manager: a change whose write fails, in a mesh', () => {
  it('is not shared with another member, which would hand it back as the newest', async () => {
    let failing = false;
    let sharedMeanwhile: unknown;
    const nodeA: { node?: Awaited<ReturnType<typeof node>> } = {}; // the store below reads it
    // A member asks during the failing write.
    const faulty = failingWhen(
      () => failing,
      undefined,
      () => (sharedMeanwhile = structuredClone(nodeA.node?.manager.shared.snapshot())),
    );
    const clock = { now: 1_000 };
    const a = await node('nodea', clock, undefined, new Set(), false, faulty);
    nodeA.node = a;
    const b = await node('nodeb', clock);
    await a.manager.create(source('s1'));
    failing = true;
    await assert.rejects(a.manager.update('s1', { topic: 't.failed' }, true), /ENOSPC/);
    failing = false;
    await b.manager.shared.merge(sharedMeanwhile);
    await a.manager.shared.merge(structuredClone(b.manager.shared.snapshot()));
    assert.equal(a.manager.get('s1').status.topic, 't.s1');
    assert.equal(b.manager.get('s1').status.topic, 't.s1');
    assert.equal(a.manager.shared.digest(), b.manager.shared.digest());
  });
});

describe('sources manager: a change whose write fails, on top of one taken from another member', () => {
  it("goes back to the member's change not yet written, not to the older one on disk", async () => {
    let failing = false;
    const clock = { now: 1_000 };
    const a = await node(
      'nodea',
      clock,
      undefined,
      new Set(),
      false,
      failingWhen(() => failing),
    );
    const b = await node('nodeb', clock);
    await a.manager.create(source('s1'));
    await b.manager.shared.merge(structuredClone(a.manager.shared.snapshot()));
    clock.now += 1_000;
    await b.manager.update('s1', { topic: 't.from-b' }, true);
    failing = true;
    // Taken from b, and its write here fails: it runs all the same (written at the next exchange).
    await assert.rejects(a.manager.shared.merge(structuredClone(b.manager.shared.snapshot())), /ENOSPC/);
    assert.equal(a.manager.get('s1').status.topic, 't.from-b');
    clock.now += 1_000;
    await assert.rejects(a.manager.update('s1', { interval_ms: 5_000 }, true), /ENOSPC/);
    // Before: back to the definition on disk (t.s1) until the next exchange.
    assert.equal(a.manager.get('s1').status.topic, 't.from-b');
    failing = false;
    await a.manager.shared.merge(structuredClone(b.manager.shared.snapshot()));
    assert.equal(a.manager.get('s1').status.topic, 't.from-b');
    assert.equal(a.manager.shared.digest(), b.manager.shared.digest());
  });
});

describe('sources manager: a store that does not answer', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('sends it one publish per source across updates, pauses and a delete, and the new runtime shows it stuck', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sources-manager-'));
    dirs.push(dir);
    const store = createSourceStore(join(dir, 'sources.json'));
    const scheduler = createScheduler({ concurrency: 4 });
    let polls = 0;
    const kind: SourceKind = {
      ...BUILTIN_KINDS.get('http')!,
      create: (_definition, io) => ({
        mode: 'poll',
        intervalMs: 20,
        run: () => io.emit([{ id: ++polls }]),
        close() {},
      }),
    };
    // A test double: the first publish hangs until released (a store that stopped answering).
    let ingests = 0;
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    const manager = createSourcesManager({
      kinds: new Map([['http', kind]]),
      steps: new Map(),
      scheduler,
      ownership: { isOwner: () => true, ownerOf: () => 'me', onChange: () => () => {} },
      store,
      changes: await store.load(),
      version: createVersionClock('me', Date.now),
      log: createLogger('silent'),
      deps: { ingest: () => (++ingests === 1 ? released : Promise.resolve()), onError: () => {} },
    });
    manager.start();
    stops.push(() => {
      release();
      manager.stop();
      scheduler.stop();
    });
    const raw = { name: 's', kind: 'http', url: 'http://127.0.0.1:9/', topic: 't.s', interval_ms: 20, timeout_ms: 100 };
    await manager.create(raw);
    await sleep(100);
    // Before, each change made a runtime with a gate of its own: one more publish in the hung store each.
    for (let i = 0; i < 3; i++) {
      await manager.setPaused('s', true);
      await manager.setPaused('s', false);
      await manager.update('s', { interval_ms: 20 + i }, true);
      await sleep(50);
    }
    await manager.remove('s');
    await manager.create(raw);
    await sleep(1_200); // past the first publish's cap (1 s)
    assert.equal(ingests, 1, `${ingests} publishes sent to the store that does not answer`);
    const status = manager.get('s').status;
    assert.equal(status.publish_stuck, true);
    // Given up on after the re-create, but the deleted incarnation's publish: not counted in the new
    // source's counters (nor its metric), which start from zero; `publish_stuck` shows it.
    assert.equal(status.abandoned_publishes, 0);
    // A deleted source's gate stays while its publish is pending, and goes once it settled.
    await manager.remove('s');
    assert.equal(manager.gates(), 1);
    release();
    await sleep(10);
    assert.equal(manager.gates(), 0);
  });
});

describe('sources manager: a source’s publishes across its runtimes', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** A manager owning every source, of a poll kind whose run is `poll(n, io)` (n counting polls). */
  const owning = async (poll: (n: number, io: DriverIo) => Promise<void>, ingest: RuntimeDeps['ingest']) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-sources-manager-'));
    dirs.push(dir);
    const store = createSourceStore(join(dir, 'sources.json'));
    const scheduler = createScheduler({ concurrency: 4 });
    let polls = 0;
    const kind: SourceKind = {
      ...BUILTIN_KINDS.get('http')!,
      create: (_definition, io) => ({ mode: 'poll', intervalMs: 20, run: () => poll(++polls, io), close() {} }),
    };
    const manager = createSourcesManager({
      kinds: new Map([['http', kind]]),
      steps: new Map(),
      scheduler,
      ownership: { isOwner: () => true, ownerOf: () => 'me', onChange: () => () => {} },
      store,
      changes: await store.load(),
      version: createVersionClock('me', Date.now),
      log: createLogger('silent'),
      deps: { ingest, onError: () => {} },
    });
    manager.start();
    stops.push(() => {
      manager.stop();
      scheduler.stop();
    });
    return manager;
  };
  const raw = { name: 's', kind: 'http', url: 'http://127.0.0.1:9/', topic: 't.s', interval_ms: 20, timeout_ms: 100 };

  it('keeps the order of its payloads across updates, with a healthy but slow store', async () => {
    const stored: number[] = [];
    let next = 0;
    const manager = await owning(
      // Each poll emits 5 payloads at once (a plugin that does not await each).
      async (_n, io) => void (await Promise.all(Array.from({ length: 5 }, () => io.emit({ seq: next++ })))),
      async (_runtime, payload) => void (await sleep(15), stored.push((payload as { seq: number }).seq)),
    );
    await manager.create(raw);
    for (let i = 0; i < 4; i++) {
      await sleep(60);
      await manager.update('s', { interval_ms: 20 + i }, true);
    }
    await sleep(200);
    assert.ok(stored.length >= 10, `${stored.length} stored`);
    assert.deepEqual(
      stored,
      [...stored].sort((a, b) => a - b),
    );
    const { status } = manager.get('s');
    assert.equal(status.abandoned_publishes + status.dropped_publishes, 0);
  });

  it('shares its dedup window with the runtime an update replaces, whose publishes still wait in the gate', async () => {
    const ingested: string[] = [];
    const manager = await owning(
      // Each poll: a payload the store takes slowly, then one with an id every poll repeats.
      async (n, io) => void (await Promise.all([io.emit([`slow${n}`]), io.emit(['again'])])),
      async (runtime, payload) => {
        const ids = payload as string[];
        if (ids[0]?.startsWith('slow')) await sleep(150);
        // As ingest.ts: an id in the source's window is skipped, a new one added to it.
        for (const id of ids.filter((id) => !runtime.seen.has(id))) {
          ingested.push(id);
          runtime.seen.add(id);
        }
      },
    );
    await manager.create(raw);
    await sleep(30); // the first poll's payloads are in the gate, `again` waiting behind `slow1`
    await manager.update('s', { interval_ms: 25 }, true);
    await sleep(600);
    // Before, the new runtime copied the window at the update, before the old runtime's queued
    // publish added `again` to its own: the new runtime ingested it a second time.
    assert.equal(ingested.filter((id) => id === 'again').length, 1);
  });

  it('restarts the status counters of a source deleted and created anew while its gate was busy', async () => {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let ingests = 0;
    const manager = await owning(
      (n, io) => io.emit([`p${n}`]),
      () => (++ingests === 1 ? released : Promise.resolve()),
    );
    stops.push(release);
    await manager.create(raw);
    await sleep(1_300); // the first publish given up on at its cap (1 s), later polls' dropped
    const before = manager.get('s').status;
    assert.equal(before.abandoned_publishes, 1);
    assert.ok(before.dropped_publishes >= 0);
    await manager.remove('s');
    await manager.create(raw);
    // Before, the re-created source showed the deleted one's counters (while its metric series start at zero).
    const after = manager.get('s').status;
    assert.equal(after.abandoned_publishes, 0);
    assert.equal(after.dropped_publishes, 0);
    assert.equal(after.publish_stuck, true, 'the store still holds the old publish: the new source waits for it');
    release();
  });

  it('does not count into a source created anew what its deleted incarnation’s publishes meet later', async () => {
    let refuse: (error: Error) => void = () => {};
    const refused = new Promise<void>((_, reject) => (refuse = reject));
    let ingests = 0;
    const manager = await owning(
      (n, io) => io.emit([`p${n}`]),
      () => (++ingests === 1 ? refused : Promise.resolve()),
    );
    stops.push(() => refuse(new Error('stopped')));
    await manager.create(raw);
    await sleep(1_300); // the first publish given up on at its cap (1 s)
    assert.equal(manager.get('s').status.abandoned_publishes, 1);
    await manager.remove('s');
    await manager.create(raw);
    refuse(new Error('node is overloaded')); // the deleted one's abandoned publish, refused at last
    await sleep(50);
    // Before, the re-created source counted it (dropped_publishes 1, stage rejected in the metric).
    const after = manager.get('s').status;
    assert.equal(after.abandoned_publishes, 0);
    assert.equal(after.dropped_publishes, 0);
    assert.equal(after.publish_stuck, false);
  });

  it('keeps its counters, last error and last success across a pause, a resume and an update', async () => {
    const manager = await owning(
      async (n, io) => {
        if (n > 1) throw new Error('upstream down (test double)');
        await io.emit(['first']);
      },
      async (runtime) => {
        runtime.recordItems(1, Date.now());
        runtime.recordDeadLetter();
      },
    );
    await manager.create(raw);
    for (let i = 0; i < 100 && manager.get('s').status.errors < 2; i++) await sleep(20);
    const before = manager.get('s').status;
    assert.ok(before.errors >= 2, `${before.errors} errors`);
    for (const change of [
      () => manager.setPaused('s', true),
      () => manager.setPaused('s', false),
      () => manager.update('s', { interval_ms: 60_000 }, true),
    ]) {
      await change();
      const { status } = manager.get('s');
      // Before, each change made a runtime with a health of its own: the status said 0 errors, 0
      // items, no last error, while anode_source_errors_total and the items' series went on.
      assert.ok(status.errors >= before.errors, `${status.errors} errors after a change, ${before.errors} before`);
      assert.equal(status.items, 1);
      assert.equal(status.dead_letters, 1);
      assert.equal(status.last_error?.message, 'upstream down (test double)');
      assert.equal(status.last_success_at, before.last_success_at);
      assert.notEqual(status.data_lag_ms, null);
      // The new definition is tried afresh: its back-off starts again from the first step.
      assert.equal(status.consecutive_failures, 0);
    }
    await manager.remove('s');
    await manager.create(raw);
    const anew = manager.get('s').status;
    assert.equal(anew.errors + anew.items + anew.dead_letters, 0, 'a source created anew counts from zero');
    assert.equal(anew.last_error, null);
  });

  it('drops the gate of a source deleted with no publish running', async () => {
    const { manager } = await node('nodea', { now: Date.now() });
    await manager.create(source('idle'));
    assert.equal(manager.gates(), 1);
    await manager.remove('idle');
    await sleep(0);
    assert.equal(manager.gates(), 0);
  });
});
