import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { createShards } from '@anode/relay-node/src/mesh/shards.ts';
import { type Feeds, startFeeds } from '../helpers/feeds.ts';
import { asArgs, FAST_MESH, meshStatus, rejoinableArgs, waitFor, waitForFullMesh } from '../helpers/mesh.ts';
import { history, type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

const TOKEN = 'mesh-admin-token';
const SOURCES = 24;
const INTERVAL_MS = 200;
const names = Array.from({ length: SOURCES }, (_, i) => `ms${i}`);
const admin = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

interface SourceStatus {
  name: string;
  state: string;
  owner: string | null;
}
interface NodeView {
  id: string;
  settled: boolean;
  members: string[];
  sources: Map<string, SourceStatus>;
}

async function view(url: string): Promise<NodeView> {
  const status = (await (await fetch(`${url}/v1/status`)).json()) as {
    node: { id: string };
    mesh: { settled: boolean; members: string[] };
    sources: SourceStatus[];
  };
  return {
    id: status.node.id,
    settled: status.mesh.settled,
    members: status.mesh.members,
    sources: new Map(status.sources.map((s) => [s.name, s])),
  };
}

const pulling = (s: SourceStatus | undefined) => s !== undefined && s.state !== 'standby' && s.state !== 'paused';

/** Every node sees the same members and owners, and each source is pulled by its owner alone. */
async function agreed(urls: string[]): Promise<Map<string, string> | undefined> {
  const views = await Promise.all(urls.map(view));
  const ids = views.map((v) => v.id).sort();
  if (!views.every((v) => v.settled && v.members.join() === ids.join())) return undefined;
  const owners = new Map<string, string>();
  for (const name of names) {
    const owner = views[0]?.sources.get(name)?.owner;
    if (!owner || !views.every((v) => v.sources.get(name)?.owner === owner)) return undefined;
    const pullers = views.filter((v) => pulling(v.sources.get(name)));
    if (pullers.length !== 1 || pullers[0]?.id !== owner) return undefined;
    owners.set(name, owner);
  }
  return owners;
}

describe('sources in a relay mesh', () => {
  const processes: RelayProcess[] = [];
  const dirs: string[] = [];
  let feeds: Feeds | undefined;
  let subscriber: RawSocket | undefined;
  let producing: ReturnType<typeof setInterval> | undefined;

  after(async () => {
    clearInterval(producing);
    subscriber?.close();
    for (const p of processes) p.child.kill('SIGKILL');
    await Promise.all(processes.map((p) => p.exited));
    await feeds?.stop();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('replicates admin changes, pulls each source on one live node, and moves a dead owner’s sources without ingesting twice', async () => {
    // The window is wide: a new owner's first poll sees items the dead one already ingested.
    feeds = await startFeeds({ window: 150 });
    const f = feeds;
    const args = async (extra: string[]) => {
      const dir = await tempDir();
      dirs.push(dir);
      return [
        '--data-dir',
        dir,
        '--admin-token',
        TOKEN,
        '--mesh-member-interval-ms',
        '250',
        '--mesh-member-timeout-ms',
        '2000',
        ...asArgs(FAST_MESH),
        ...extra,
      ];
    };
    const a = await spawnRelay(await args(['--port', '0', '--listen', '/ip4/127.0.0.1/tcp/0']));
    processes.push(a);
    const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    // Fixed ports, so the node can be restarted as itself.
    const bArgs = await args(await rejoinableArgs(bootstrap));
    const cArgs = await args(await rejoinableArgs(bootstrap));
    const [b, c] = await Promise.all([spawnRelay(bArgs), spawnRelay(cArgs)]);
    const nodes = [a, b as RelayProcess, c as RelayProcess];
    processes.push(b as RelayProcess, c as RelayProcess);
    await waitForFullMesh(
      nodes.map((n) => n.url),
      createShards(32).gossipTopic('msrc.ms0'),
    );

    // Items keep coming on every feed for the whole test.
    let round = 0;
    const produce = () => {
      for (const name of names) f.push(name, { id: `${name}-${round}`, ts: Date.now() });
      round += 1;
    };
    produce();
    producing = setInterval(produce, 300);

    // Created on A only; every node learns them from A.
    for (const name of names) {
      const res = await fetch(`${a.url}/v1/admin/sources`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({
          name,
          kind: 'http',
          url: f.httpUrl(name),
          interval_ms: INTERVAL_MS,
          topic: `msrc.${name}`,
          items_path: '$.items',
          id_path: '$.id',
          ts_path: '$.ts',
        }),
      });
      assert.equal(res.status, 201, await res.text());
    }
    const urls = nodes.map((n) => n.url);
    let owners: Map<string, string> | undefined;
    await waitFor(
      'every node to know every source, and each source to have one puller',
      async () => (owners = await agreed(urls)) !== undefined,
      20_000,
      100,
    );
    const byOwner = (map: Map<string, string>, id: string) => names.filter((n) => map.get(n) === id);
    const views = await Promise.all(urls.map(view));
    for (const v of views) assert.ok(byOwner(owners as Map<string, string>, v.id).length > 0, `${v.id} owns nothing`);

    // Steady state: each source is polled at its interval, not twice as often.
    const pollRate = async (list: string[], ms: number) => {
      const before = new Map(list.map((n) => [n, f.hits(n).length]));
      await new Promise((r) => setTimeout(r, ms));
      return Math.max(...list.map((n) => f.hits(n).length - (before.get(n) ?? 0)));
    };
    const expectedPolls = 3_000 / INTERVAL_MS;
    const steady = await pollRate(names, 3_000);
    assert.ok(steady <= expectedPolls * 1.4 + 1, `a source was polled ${steady} times in 3 s (double polling?)`);

    // A raw subscriber on a node that stays up sees every delivery, duplicates included.
    const victimIndex = 1 + views.slice(1).findIndex((v) => byOwner(owners as Map<string, string>, v.id).length > 0);
    const victim = nodes[victimIndex] as RelayProcess;
    const victimId = (views[victimIndex] as NodeView).id;
    const survivors = nodes.filter((n) => n !== victim);
    subscriber = await openSocket(`${a.wsUrl}/v1/ws`);
    subscriber.send({ op: 'sub', topic: 'msrc.>', ref: 'all' });
    await subscriber.next((frame) => frame.op === 'subscribed');
    const subscribedAt = Date.now();

    const moved = byOwner(owners as Map<string, string>, victimId);
    victim.child.kill('SIGKILL');
    await victim.exited;
    const killedAt = Date.now();
    let after: Map<string, string> | undefined;
    await waitFor(
      'the survivors to take the dead node’s sources over',
      async () => (after = await agreed(survivors.map((n) => n.url))) !== undefined,
      10_000,
      50,
    );
    const takeoverMs = Date.now() - killedAt;
    for (const name of moved) assert.notEqual(after?.get(name), victimId);
    for (const name of names.filter((n) => !moved.includes(n)))
      assert.equal(after?.get(name), owners?.get(name), `${name} moved though its owner lives`);
    const steadyAfter = await pollRate(moved, 2_000);
    assert.ok(steadyAfter <= (2_000 / INTERVAL_MS) * 1.4 + 1, `a moved source was polled ${steadyAfter} times in 2 s`);

    // It comes back as itself: its sources return to it, still one puller each.
    const restarted = await spawnRelay(victimIndex === 1 ? bArgs : cArgs);
    processes.push(restarted);
    const back = nodes.map((n) => (n === victim ? restarted : n));
    let rejoined: Map<string, string> | undefined;
    await waitFor(
      'the restarted node to take its sources back',
      async () => (rejoined = await agreed(back.map((n) => n.url))) !== undefined,
      20_000,
      100,
    );
    for (const name of names) assert.equal(rejoined?.get(name), owners?.get(name), name);

    // A node that hangs (SIGSTOP) is dropped after the member timeout and its sources move; when
    // it wakes it settles again before it owns anything, and takes them back.
    const frozen = back.find((n) => n !== a) as RelayProcess;
    frozen.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    const awake = back.filter((n) => n !== frozen);
    await waitFor(
      'the others to take a hung node’s sources',
      async () => (await agreed(awake.map((n) => n.url))) !== undefined,
      15_000,
      100,
    );
    await new Promise((r) => setTimeout(r, Math.max(0, frozenAt + 2_500 - Date.now()))); // past the member timeout
    frozen.child.kill('SIGCONT');
    let thawed: Map<string, string> | undefined;
    await waitFor(
      'the woken node to take its sources back',
      async () => (thawed = await agreed(back.map((n) => n.url))) !== undefined,
      20_000,
      100,
    );
    for (const name of names) assert.equal(thawed?.get(name), owners?.get(name), name);
    assert.match(frozen.output.join(''), /unresponsive; rejoining the cluster/);

    // Stop producing; every item is in every store exactly once, and the subscriber got every
    // item produced after it subscribed exactly once.
    clearInterval(producing);
    const produced = names.flatMap((name) => f.items(name).map((item) => `${name}/${item.id}`)).sort();
    await waitFor(
      'every item in every store',
      async () => {
        for (const node of back)
          for (const name of names)
            if ((await history(node.url, `msrc.${name}`)).length < f.items(name).length) return false;
        return true;
      },
      20_000,
      250,
    );
    for (const node of back) {
      const stored: string[] = [];
      for (const name of names)
        stored.push(
          ...(await history(node.url, `msrc.${name}`)).map((m) => `${m.source}/${(m.data as { id: string }).id}`),
        );
      assert.equal(new Set(stored).size, stored.length, `${node.url} stored an item twice`);
      assert.deepEqual(stored.sort(), produced, `${node.url} has exactly the produced items`);
    }
    const delivered = (subscriber?.frames ?? []).flatMap((frame) =>
      frame.op === 'msg' ? [`${frame.source}/${(frame.data as { id: string }).id}`] : [],
    );
    assert.equal(new Set(delivered).size, delivered.length, 'an item was delivered twice');
    const deliveredSet = new Set(delivered);
    const expectedLive = names.flatMap((name) =>
      f
        .items(name)
        .filter((item) => item.ts > subscribedAt)
        .map((item) => `${name}/${item.id}`),
    );
    assert.ok(expectedLive.length > SOURCES * 10, 'items were produced while the owner died and came back');
    for (const key of expectedLive) assert.ok(deliveredSet.has(key), `${key} was not delivered live`);

    // Changes made on any node reach every node: a delete on one, a pause on another.
    const [first, second, third] = back as [RelayProcess, RelayProcess, RelayProcess];
    assert.equal((await fetch(`${third.url}/v1/admin/sources/ms0`, { method: 'DELETE', headers: admin })).status, 200);
    assert.equal(
      (await fetch(`${second.url}/v1/admin/sources/ms1/pause`, { method: 'POST', headers: admin })).status,
      200,
    );
    await waitFor(
      'the delete and the pause on every node',
      async () => {
        const all = await Promise.all(back.map((n) => view(n.url)));
        return all.every((v) => !v.sources.has('ms0') && v.sources.get('ms1')?.state === 'paused');
      },
      10_000,
      100,
    );
    const listed = (await (await fetch(`${first.url}/v1/admin/sources`, { headers: admin })).json()) as {
      sources: { name: string; paused: boolean }[];
    };
    assert.equal(listed.sources.length, SOURCES - 1);
    assert.equal(listed.sources.find((x) => x.name === 'ms1')?.paused, true);
    process.stderr.write(`takeover after SIGKILL: ${takeoverMs} ms (${moved.length} sources moved)\n`);
  });
});

describe('config-file sources in a relay mesh', () => {
  const processes: RelayProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const p of processes) p.child.kill('SIGKILL');
    await Promise.all(processes.map((p) => p.exited));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('reserves the name of a source in one node’s config file on every member, and pulls it there', async () => {
    const dir = async () => {
      const d = await tempDir();
      dirs.push(d);
      return d;
    };
    const own = { name: 'only-on-a', kind: 'http', url: 'http://127.0.0.1:1/none', topic: 'cfg.a' };
    // More of them: with owners drawn from every member, about half would go to b, which lacks them.
    const more = Array.from({ length: 12 }, (_, i) => ({ ...own, name: `only-on-a-${i}`, interval_ms: 60_000 }));
    const a = await spawnRelay([
      '--port',
      '0',
      '--data-dir',
      await dir(),
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--sources',
      JSON.stringify([own, ...more]),
      '--mesh-member-interval-ms',
      '250',
      ...asArgs(FAST_MESH),
    ]);
    processes.push(a);
    const bootstrap = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    const b = await spawnRelay([
      '--port',
      '0',
      '--data-dir',
      await dir(),
      '--bootstrap',
      bootstrap,
      '--mesh-member-interval-ms',
      '250',
      ...asArgs(FAST_MESH),
    ]);
    processes.push(b);
    const post = (source: string, topic = 'cfg.a') =>
      fetch(`${b.url}/v1/topics/${topic}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: 1, source }),
      }).then((res) => res.status);
    // b has no such source itself: it learns the name from a over the mesh.
    // Probed on another topic: a probe accepted before the name arrived is stored there.
    await waitFor(
      'b to refuse a publish as a’s configured source',
      async () => (await post('only-on-a', 'cfg.probe')) === 403,
    );
    assert.equal(await post('only-on-a'), 403);
    assert.equal(await post('someone-else'), 202);
    assert.deepEqual(
      (await history(b.url, 'cfg.a')).map((m) => m.source),
      ['someone-else'],
    );
    // a pulls every one of its own sources: b is a member, but its file has none of them.
    const [va, vb] = await Promise.all([view(a.url), view(b.url)]);
    await waitFor('a to see b as a settled member', async () => {
      const v = await view(a.url);
      return v.settled && v.members.includes(vb.id);
    });
    const mine = (await view(a.url)).sources;
    assert.equal(mine.size, 13);
    for (const [name, s] of mine) {
      assert.equal(s.owner, va.id, `${name} drawn to ${String(s.owner)}`);
      assert.ok(pulling(s), `${name} is ${s.state}`);
    }
    assert.equal((await view(b.url)).sources.size, 0);
  });
});
