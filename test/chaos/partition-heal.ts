// A healed partition, proven: four relays split two against two, each half publishing; then the
// partition heals. Run inside the lab's client namespace by test/e2e/partition-heal.test.ts;
// prints one JSON line of findings (the test asserts on them) and exits 0 unless it broke.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Envelope } from '@anode/shared';
import { createClient } from '@anode/client';
import { heal, type LabPlan, partition } from './lab.ts';
import { createRelays } from './relays.ts';

const CLI = fileURLToPath(new URL('../../relay-node/bin/anode.ts', import.meta.url));
const TOPIC = 'part.t';
const PER_HALF = 40;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(250);
  }
}

const plan = JSON.parse(process.env.ANODE_CHAOS_LAB ?? '{}') as LabPlan;
const runDir = mkdtempSync(join(tmpdir(), 'anode-partition-'));
const secret = randomBytes(32).toString('hex');
const meshKey = randomBytes(32).toString('hex');
const bearer = execFileSync(process.execPath, [CLI, 'token', '--secret', secret, '--pub', 'part.>', '--sub', 'part.>'])
  .toString()
  .trim();
const relays = createRelays({
  plan,
  runDir,
  flags: () => [
    '--mesh-key',
    meshKey,
    '--jwt-secret',
    secret,
    '--store-fsync',
    'false',
    '--publish-rate',
    '100000',
    '--publish-burst',
    '100000',
    '--mesh-discovery-interval-ms',
    '500',
    '--mesh-ping-interval-ms',
    '1000',
  ],
});
const auth = { authorization: `Bearer ${bearer}` };

async function stored(url: string): Promise<Envelope[]> {
  const res = await fetch(`${url}/v1/topics/${TOPIC}/messages?limit=1000`, { headers: auth });
  if (!res.ok) throw new Error(`history: ${res.status}`);
  return ((await res.json()) as { messages: Envelope[] }).messages;
}

async function publish(url: string, data: unknown): Promise<{ id: string; cursor: string }> {
  const res = await fetch(`${url}/v1/topics/${TOPIC}/messages`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ data }),
  });
  if (res.status !== 202) throw new Error(`publish: ${res.status} ${await res.text()}`);
  const [ack] = ((await res.json()) as { messages: { id: string; cursor: string }[] }).messages;
  if (!ack) throw new Error('publish: no ack');
  return ack;
}

function subscriber(wsUrl: string, after?: string) {
  const received: Envelope[] = [];
  const client = createClient({ url: wsUrl, token: bearer, reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } });
  const sub = client.subscribe(TOPIC, (m) => received.push(m), after === undefined ? {} : { after });
  return { client, sub, received, ids: () => new Set(received.map((m) => m.id)) };
}

const has = (ids: Set<string>, want: string[]) => want.every((id) => ids.has(id));

try {
  await Promise.all(relays.map((r) => r.start()));
  const subs = relays.map((r) => subscriber(r.wsUrl));
  await Promise.all(subs.map((s) => s.sub.ready));
  // The mesh works end to end before the split: a message reaches every subscriber live (a
  // fresh mesh may take a while to form on a busy machine; probe every 10 s, up to 3 min).
  let before: { id: string; cursor: string } | undefined;
  const formedBy = Date.now() + 180_000;
  while (!before) {
    const probe = await publish(relays[0]?.url ?? '', 'before');
    try {
      await waitUntil('every subscriber has the probe', async () => subs.every((s) => s.ids().has(probe.id)), 10_000);
      before = probe;
    } catch (error) {
      if (Date.now() > formedBy) throw error;
    }
  }

  const halves = [
    [0, 1],
    [2, 3],
  ];
  partition(plan, halves);
  // Each half publishes to both of its relays, alternating.
  const acked: { id: string; cursor: string }[][] = [[], []];
  for (let i = 0; i < PER_HALF; i++) {
    for (const [h, half] of halves.entries()) {
      const relay = relays[half[i % 2] ?? 0];
      acked[h]?.push(await publish(relay?.url ?? '', { half: h, i }));
    }
    await sleep(25);
  }
  const [a, b] = [acked[0]?.map((m) => m.id) ?? [], acked[1]?.map((m) => m.id) ?? []];
  // Each half keeps serving itself ...
  await waitUntil(
    'each half delivers its own messages',
    async () => halves.every((half, h) => half.every((i) => has(subs[i]?.ids() ?? new Set(), h === 0 ? a : b))),
    30_000,
  );
  // ... and does not see the other half (the partition is real).
  await sleep(3_000);
  const crossedDuring = (await Promise.all([stored(relays[2]?.url ?? ''), stored(relays[0]?.url ?? '')])).map(
    (messages, h) => messages.filter((m) => (h === 0 ? a : b).includes(m.id)).length,
  );
  // A subscriber on half A that leaves during the partition, with the cursor it had then.
  const leaver = subscriber(relays[1]?.wsUrl ?? '', before.cursor);
  await waitUntil('the leaver has half A', async () => has(leaver.ids(), a), 30_000);
  const leftAt = leaver.sub.cursor ?? before.cursor;
  leaver.client.close();

  const healedAt = Date.now();
  heal(plan);
  const all = [...a, ...b];
  await waitUntil(
    'every store holds both halves',
    async () =>
      (await Promise.all(relays.map((r) => stored(r.url)))).every((m) => has(new Set(m.map((x) => x.id)), all)),
    120_000,
  );
  const storesConvergedMs = Date.now() - healedAt;
  await waitUntil(
    'every connected subscriber has both halves',
    async () => subs.every((s) => has(s.ids(), all)),
    120_000,
  );
  const subscribersCaughtUpMs = Date.now() - healedAt;
  // Resume across the healed mesh: on the other half, from before the partition.
  const resumed = subscriber(relays[3]?.wsUrl ?? '', before.cursor);
  await waitUntil('the resumed subscriber has both halves', async () => has(resumed.ids(), all), 60_000);
  // And from the cursor the leaver had during the partition (half B's messages interleave by time).
  const fromLeft = subscriber(relays[3]?.wsUrl ?? '', leftAt);
  await sleep(3_000);
  const missedFromLeft = b.filter((id) => !fromLeft.ids().has(id)).length;
  const after = await publish(relays[2]?.url ?? '', 'after');
  await waitUntil(
    'the healed mesh carries new messages everywhere',
    async () => subs.every((s) => s.ids().has(after.id)),
    30_000,
  );

  const stores = await Promise.all(relays.map((r) => stored(r.url)));
  const report = {
    per_half: PER_HALF,
    crossed_during_partition: crossedDuring,
    stores_converged_ms: storesConvergedMs,
    subscribers_caught_up_ms: subscribersCaughtUpMs,
    // Of the messages this scenario tracks (earlier probes may be there too).
    store_sizes: stores.map((m) => m.filter((x) => [before.id, ...all, after.id].includes(x.id)).length),
    store_duplicates: stores.map((m) => m.length - new Set(m.map((x) => x.id)).size),
    subscriber_duplicates: subs.map((s) => s.received.length - s.ids().size),
    subscriber_missing: subs.map((s) => all.filter((id) => !s.ids().has(id)).length),
    resumed_missing: all.filter((id) => !resumed.ids().has(id)).length,
    resumed_duplicates: resumed.received.length - resumed.ids().size,
    missed_resuming_from_partition_cursor: missedFromLeft,
  };
  for (const s of [...subs, resumed, fromLeft]) s.client.close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
} finally {
  await Promise.all(relays.map((r) => r.stop()));
  rmSync(runDir, { recursive: true, force: true });
}
process.exit(0);
