import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEdge } from '../../worker/test-support/edge-runtime.ts';
import { startCassandra, type CassandraServer } from '../cassandra/cassandra-server.ts';
import { forwardEdge } from './edge-link.ts';
import { createFaultSchedule, type FaultKind, type FaultRecord, seededRandom } from './faults.ts';
import type { LabPlan } from './lab.ts';
import {
  type Acked,
  EDGE_TOPIC,
  edgeSubscriber,
  httpPublisher,
  type Publisher,
  RELAY_TOPICS,
  relaySubscriber,
  type Subscriber,
  wsPublisher,
} from './load.ts';
import { createRelays } from './relays.ts';
import { checkSubscriber, divergence, longestWaitAfterHeal, missingFromStore, table } from './verify.ts';

/**
 * The chaos driver: runs inside the lab's client namespace (see cli.ts), starts everything,
 * drives load and faults for the given minutes, then heals everything, waits for the system to
 * settle and checks what it promised. Resolves with the exit code.
 */
export interface RunOptions {
  minutes: number;
  seed: number;
  store: 'embedded' | 'cassandra';
  runDir: string;
  plan: LabPlan;
  /** Fault kinds to inject (all when absent; empty: a baseline without faults). */
  faults?: FaultKind[];
  /** Upper bounds a relay must stay under (generous: the machine is shared). */
  maxRssBytes: number;
  maxFds: number;
  /** How long the system may take to settle after the last fault. */
  settleMs: number;
}

const CLI = fileURLToPath(new URL('../../relay-node/bin/anode.ts', import.meta.url));
/** How long the gaps may stay the same size while settling before they count as lost. */
const STALL_MS = 120_000;
const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A token from the project's own CLI, so a change of the claim shape changes it too. */
function token(secret: string): string {
  return execFileSync(process.execPath, [
    CLI,
    'token',
    '--secret',
    secret,
    '--pub',
    'chaos.>',
    '--sub',
    'chaos.>',
    '--subject',
    'chaos',
    '--expires',
    '24h',
  ])
    .toString()
    .trim();
}

export async function runChaos(options: RunOptions): Promise<number> {
  const { plan, runDir } = options;
  const random = seededRandom(options.seed ^ 0x5eed);
  const pick = () => Math.floor(random() * 1_000_000);
  const jwtSecret = randomBytes(32).toString('hex');
  const meshKey = randomBytes(32).toString('hex');
  const linkSecret = randomBytes(24).toString('hex');
  const bearer = token(jwtSecret);
  const cleanup: (() => Promise<void> | void)[] = [];

  try {
    let cassandra: CassandraServer | undefined;
    let cassandraPort = 0;
    const startDb = async () => {
      cassandra = await startCassandra({
        host: plan.clientAddress,
        dataDir: join(runDir, 'cassandra'),
        ...(cassandraPort ? { cqlPort: cassandraPort } : {}),
        heap: '1g',
        fast: true,
        timeoutMs: 240_000,
      });
      cassandraPort = cassandra.port;
    };
    if (options.store === 'cassandra') {
      say('chaos: starting Cassandra');
      await startDb();
      cleanup.push(() => cassandra?.stop());
    }

    // The edge dials relays back at EDGE_URL only: that is the forwarder the run can cut.
    let edgePort = 0;
    const link = await forwardEdge(plan.clientAddress, () => edgePort);
    cleanup.push(() => link.close());
    const relay0 = `http://${plan.relays[0]?.address}:8080`;
    const edge = await startEdge({
      RELAY_URLS: relay0,
      EDGE_URL: link.origin,
      LINK_SECRET: linkSecret,
      JWT_SECRET: jwtSecret,
      LINK_WAIT_MS: '2000',
      LINK_RETRY_MAX_MS: '1000',
    });
    edgePort = Number(new URL(edge.url).port);
    cleanup.push(() => edge.stop());

    const relays = createRelays({
      plan,
      runDir,
      flags: (index) => [
        '--mesh-key',
        meshKey,
        '--jwt-secret',
        jwtSecret,
        '--publish-rate',
        '100000',
        '--publish-burst',
        '100000',
        '--retention-max-messages',
        '0',
        '--mesh-discovery-interval-ms',
        '1000',
        '--mesh-ping-interval-ms',
        '2000',
        '--mesh-persist',
        options.store === 'cassandra' ? 'origin' : 'all',
        ...(options.store === 'cassandra'
          ? ['--store', 'cassandra', '--cassandra-contact-points', `${plan.clientAddress}:${cassandraPort}`]
          : ['--store-fsync', 'false']),
        ...(index === 0 ? ['--edge-link-secret', linkSecret, '--edge-url', link.origin, '--edge-ping-ms', '2000'] : []),
      ],
    });
    cleanup.push(async () => {
      await Promise.all(relays.map((r) => r.stop()));
    });
    say(`chaos: starting ${relays.length} relays`);
    await Promise.all(relays.map((r) => r.start()));

    const acked: Acked[] = [];
    const record = (a: Acked) => acked.push(a);
    const subscribers: Subscriber[] = [
      ...relays.map((r) => relaySubscriber(`sub@relay${r.index}`, r.wsUrl, bearer)),
      edgeSubscriber('sub@edge', edge.wsUrl, bearer),
    ];
    cleanup.push(() => subscribers.forEach((s) => s.close()));
    // A live subscription without `after` starts at `subscribed`: publish nothing before it.
    await Promise.all(subscribers.map((s) => s.ready));
    const liveUrls = () => {
      const up = relays.filter((r) => r.up).map((r) => r.url);
      return up.length > 0 ? up : relays.map((r) => r.url);
    };
    const publishers: Publisher[] = [
      ...relays.map((r) =>
        wsPublisher({ name: `ws@relay${r.index}`, wsUrl: r.wsUrl, token: bearer, rate: 4, pick, record }),
      ),
      httpPublisher({
        name: 'http',
        urls: liveUrls,
        token: bearer,
        topics: RELAY_TOPICS,
        batch: 3,
        rate: 6,
        pick,
        record,
      }),
      httpPublisher({
        name: 'edge',
        urls: () => [edge.url],
        token: bearer,
        topics: [EDGE_TOPIC],
        batch: 2,
        rate: 4,
        pick,
        record,
      }),
    ];

    // Samples of each relay's memory and descriptors, every 5 s.
    const samples = relays.map(() => ({ maxRss: 0, maxFds: 0, rss: [] as number[] }));
    const sampler = setInterval(() => {
      for (const r of relays) {
        const s = r.sample();
        const into = samples[r.index];
        if (!s || !into) continue;
        into.maxRss = Math.max(into.maxRss, s.rssBytes);
        into.maxFds = Math.max(into.maxFds, s.fds);
        into.rss.push(s.rssBytes);
      }
    }, 5_000);
    cleanup.push(() => clearInterval(sampler));

    const started = Date.now();
    const until = started + options.minutes * 60_000;
    let current = 'none';
    const progress = setInterval(() => {
      const min = Math.min(...subscribers.map((s) => s.delivered.length));
      const up = relays.filter((r) => r.up).length;
      say(
        `chaos: ${Math.round((Date.now() - started) / 1000)} s  acked ${acked.length}  ` +
          `least delivered ${min}  relays up ${up}/${relays.length}  faults ${schedule.records.length}  now: ${current}`,
      );
    }, 10_000);
    cleanup.push(() => clearInterval(progress));

    const probes: { fault: FaultRecord; id: string }[] = [];
    const probe = async (fault: FaultRecord) => {
      for (let attempt = 0; attempt < 60; attempt++) {
        const urls = liveUrls();
        try {
          const res = await fetch(`${urls[attempt % urls.length]}/v1/topics/${EDGE_TOPIC}/messages`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
            body: JSON.stringify({ data: { probe: fault.kind }, key: `probe-${fault.startedAt}` }),
            signal: AbortSignal.timeout(5_000),
          });
          if (res.status === 202) {
            const [m] = ((await res.json()) as { messages: { id: string; cursor: string }[] }).messages;
            if (m) {
              record({ id: m.id, topic: EDGE_TOPIC, cursor: m.cursor, via: 'probe', at: Date.now() });
              probes.push({ fault, id: m.id });
            }
            return;
          }
        } catch {
          // try another relay
        }
        await sleep(500);
      }
    };

    const schedule = createFaultSchedule(options.seed, {
      ...(options.faults ? { only: options.faults } : {}),
      plan,
      relays,
      edgeLink: link,
      ...(options.store === 'cassandra'
        ? {
            cassandra: {
              stop: async () => {
                await cassandra?.stop();
              },
              start: startDb,
            },
          }
        : {}),
    });
    say(`chaos: load running; faults for ${options.minutes} min with seed ${options.seed}`);
    await schedule.run(
      until,
      async (fault) => {
        current = 'none';
        say(`chaos: healed ${fault.kind} (${fault.detail})`);
        await probe(fault);
      },
      (kind, detail) => {
        current = `${kind} ${detail}`;
        say(`chaos: fault ${kind} ${detail}`);
      },
    );

    say('chaos: faults over; stopping publishers and letting the system settle');
    // Whatever did not come back during the schedule gets one more chance now.
    for (const r of relays.filter((relay) => !relay.up)) {
      try {
        await r.kill();
        await r.start();
      } catch (error) {
        schedule.problems.push(`final restart: ${(error as Error).message}`);
      }
    }
    await Promise.all(publishers.map((p) => p.stop()));
    clearInterval(progress);

    // Settle: every relay's store and every subscriber must reach every acked message.
    const readTopic = async (url: string, topic: string) => {
      const ids = new Set<string>();
      let after: string | null = null;
      do {
        const query: string = after ? `?limit=1000&after=${after}` : '?limit=1000';
        const res = await fetch(`${url}/v1/topics/${topic}/messages${query}`, {
          headers: { authorization: `Bearer ${bearer}` },
          signal: AbortSignal.timeout(30_000),
        });
        if (!res.ok) throw new Error(`history of ${topic} on ${url}: ${res.status}`);
        const body = (await res.json()) as { messages: { id: string }[]; next: string | null };
        for (const m of body.messages) ids.add(m.id);
        after = body.next;
      } while (after);
      return ids;
    };
    const topics = [...RELAY_TOPICS, EDGE_TOPIC];
    const readStore = async (url: string) =>
      new Map(await Promise.all(topics.map(async (t) => [t, await readTopic(url, t)] as const)));
    const storeUrls = options.store === 'cassandra' ? [relays[0]?.url ?? ''] : relays.map((r) => r.url);

    const settleStart = Date.now();
    let stores: Map<string, Set<string>>[] = [];
    let storeMissing = 0;
    let subsMissing = 0;
    // Settle while the gaps keep shrinking: on a loaded machine catch-up is slow but steady;
    // gaps that stop shrinking for STALL_MS (or outlast --settle-s) are losses.
    let best = Number.POSITIVE_INFINITY;
    let progressAt = Date.now();
    for (;;) {
      try {
        stores = await Promise.all(storeUrls.map(readStore));
        storeMissing = stores.reduce((sum, s) => sum + missingFromStore(acked, s).length, 0);
      } catch (error) {
        say(`chaos: reading stores: ${(error as Error).message}`);
        storeMissing = -1;
      }
      subsMissing = subscribers.reduce((sum, s) => sum + checkSubscriber(s, acked).missing, 0);
      const converged = storeMissing === 0 && divergence(stores).length === 0;
      if (converged && subsMissing === 0) break;
      const gaps = Math.max(0, storeMissing) + subsMissing;
      if (gaps < best) [best, progressAt] = [gaps, Date.now()];
      if (Date.now() - settleStart > options.settleMs || Date.now() - progressAt > STALL_MS) break;
      say(`chaos: settling: ${storeMissing} store gaps, ${subsMissing} subscriber gaps`);
      await sleep(5_000);
    }
    const settledMs = Date.now() - settleStart;

    // The report.
    const byKind = new Map<string, number>();
    for (const f of schedule.records) byKind.set(f.kind, (byKind.get(f.kind) ?? 0) + 1);
    const lostInStore = new Set<string>();
    stores.forEach((s) => missingFromStore(acked, s).forEach((a) => lostInStore.add(a.id)));
    const subReports = subscribers.map((s) => checkSubscriber(s, acked));
    const lostToSubs = new Set<string>();
    for (const s of subscribers) {
      const got = new Set(s.delivered.map((d) => d.id));
      for (const a of acked) if (s.covers(a.topic) && !got.has(a.id)) lostToSubs.add(a.id);
    }
    const diverged = divergence(stores);
    const wait = longestWaitAfterHeal(probes, subscribers);
    const memory = samples.map((s, i) => {
      const early = s.rss.slice(0, Math.max(1, Math.floor(s.rss.length / 4)));
      return { i, maxRss: s.maxRss, maxFds: s.maxFds, earlyRss: Math.max(...early, 0) };
    });
    const overBound = memory.filter((m) => m.maxRss > options.maxRssBytes || m.maxFds > options.maxFds);
    const mib = (b: number) => `${Math.round(b / 1048576)} MiB`;

    say('\n== chaos report');
    say(
      table([
        ['seed', options.seed],
        ['store', `${options.store} (persist ${options.store === 'cassandra' ? 'origin' : 'all'})`],
        ['fault time', `${options.minutes} min`],
        ...[...byKind.entries()].map(([k, n]): [string, number] => [`faults: ${k}`, n]),
        ['faults: total', schedule.records.length],
        ['problems (relay would not restart)', schedule.problems.length],
        ['messages acked', acked.length],
        ['lost (store)', lostInStore.size],
        ['lost (subscribers)', lostToSubs.size],
        ['duplicates dropped by clients', subReports.reduce((sum, r) => sum + r.dropped, 0)],
        ['delivered twice after dedup', subReports.reduce((sum, r) => sum + r.duplicates, 0)],
        ['late (older than one seen, same origin)', subReports.reduce((sum, r) => sum + r.late, 0)],
        ['stores converged', diverged.length === 0 ? 'yes' : `no (${diverged.length} differences)`],
        ['settled after faults in', `${Math.round(settledMs / 1000)} s`],
        ['longest wait after a heal', `${wait.ms} ms (${wait.what})`],
        ...memory.map((m): [string, string] => [
          `relay ${m.i} peak RSS / fds`,
          `${mib(m.maxRss)} (first quarter ${mib(m.earlyRss)}) / ${m.maxFds}`,
        ]),
      ]),
    );
    for (const r of subReports) {
      if (r.firstProblems.length > 0) say(`  ${r.name}: ${r.firstProblems.join('; ')}`);
    }
    for (const d of diverged.slice(0, 10)) say(`  divergence: ${d}`);
    for (const m of overBound) say(`  relay ${m.i} over its bound: ${mib(m.maxRss)}, ${m.maxFds} fds`);
    for (const p of schedule.problems) say(`  problem: ${p}`);

    const failed =
      lostInStore.size > 0 ||
      lostToSubs.size > 0 ||
      subReports.some((r) => r.duplicates > 0) ||
      diverged.length > 0 ||
      overBound.length > 0 ||
      schedule.problems.length > 0 ||
      storeMissing < 0;
    // Everything the checks used, for reproducing a failure by hand.
    await writeFile(
      join(runDir, 'records.json'),
      JSON.stringify({
        seed: options.seed,
        started,
        faults: schedule.records,
        probes: probes.map((p) => p.id),
        acked,
        subscribers: Object.fromEntries(subscribers.map((s) => [s.name, s.delivered])),
      }),
    );
    say(failed ? '\nchaos: FAILED (run folder kept: ' + runDir + ')' : '\nchaos: passed: nothing acked was lost');
    return failed ? 1 : 0;
  } finally {
    for (const step of cleanup.reverse()) {
      try {
        await step();
      } catch {
        // keep cleaning up
      }
    }
  }
}
