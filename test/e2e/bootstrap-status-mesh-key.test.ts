import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { applyEvent, BOOTSTRAP_GRACE_MS, emptyModel } from '@anode/relay-node/dashboard/src/model.ts';
import type { BootstrapStatus, RelayStatus } from '@anode/relay-node/src/dashboard/status-schema.ts';
import { asArgs, FAST_MESH, meshStatus, waitFor } from '../helpers/mesh.ts';
import { type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';
import { statusEventOf } from '../helpers/status-event.ts';

/**
 * A relay whose bootstrap peer it cannot reach (here: another mesh key) logged a warning, but its
 * `/v1/status` said nothing and the dashboard showed "All healthy, 1 up of 1" while it was alone.
 * Now `mesh.bootstrap` lists each address (connected, since, the logged failure) and the page's
 * problem list names it once it stays unconnected past a short grace.
 */
const status = async (url: string) => (await (await fetch(`${url}/v1/status`)).json()) as RelayStatus;
const bootstrapOf = (s: RelayStatus): BootstrapStatus | undefined => s.mesh?.bootstrap?.[0];

const problemsAt = (s: RelayStatus, at: number) => applyEvent(emptyModel(), statusEventOf(s, at)).problems;

describe('bootstrap status: a relay that cannot reach its bootstrap peer', () => {
  const relays: RelayProcess[] = [];
  after(async () => {
    for (const relay of relays) relay.child.kill('SIGKILL');
    await Promise.all(relays.map((relay) => relay.exited));
  });

  it('lists the address as not connected with the hint in /v1/status, and the page names it as a problem', async () => {
    const key = randomBytes(32).toString('hex');
    const other = randomBytes(32).toString('hex');
    const base = async () => ['--port', '0', '--data-dir', await tempDir(), ...asArgs(FAST_MESH)];
    const a = await spawnRelay([...(await base()), '--listen', '/ip4/127.0.0.1/tcp/0', '--mesh-key', key]);
    relays.push(a);
    const address = (await meshStatus(a.url)).node.multiaddrs[0] as string;
    const wrong = await spawnRelay([...(await base()), '--bootstrap', address, '--mesh-key', other]);
    const right = await spawnRelay([...(await base()), '--bootstrap', address, '--mesh-key', key]);
    relays.push(wrong, right);

    await waitFor('the failed dial in the status', async () => !!bootstrapOf(await status(wrong.url))?.error, 60_000);
    const failed = await status(wrong.url);
    const entry = bootstrapOf(failed) as BootstrapStatus;
    assert.equal(failed.mesh?.bootstrap?.length, 1);
    assert.equal(entry.address, address);
    assert.equal(entry.connected, false);
    assert.match(entry.error ?? '', /EncryptionFailedError/);
    assert.match(entry.error ?? '', /different mesh keys/);
    assert.match(entry.error ?? '', /check that mesh_key \(or mesh_key_file\) is the same on both relays/);
    const since = Date.parse(entry.since);
    assert.ok(Number.isFinite(since) && since <= Date.now(), `since is a time: ${entry.since}`);
    const json = JSON.stringify(failed);
    assert.ok(!json.includes(key) && !json.includes(other), 'no key in the status');

    // Within the grace (a normal start) it is not a problem yet; past it, the banner names it.
    const named = (problems: string[]) => problems.filter((p) => p.startsWith('Bootstrap peer'));
    assert.deepEqual(named(problemsAt(failed, since + 1_000)), []);
    await waitFor('the grace to pass', () => Date.now() - since > BOOTSTRAP_GRACE_MS, BOOTSTRAP_GRACE_MS + 5_000, 250);
    const later = await status(wrong.url);
    const problems = problemsAt(later, Date.now());
    const [problem] = named(problems);
    assert.equal(named(problems).length, 1, problems.join('\n'));
    assert.ok(problem?.startsWith(`Bootstrap peer ${address} unreachable: `), problem);
    assert.match(problem ?? '', /different mesh keys/);

    // The relay with the same key is connected: no problem, however long after.
    await waitFor(
      'the same-key relay to connect',
      async () => bootstrapOf(await status(right.url))?.connected === true,
      60_000,
    );
    const good = await status(right.url);
    assert.equal(bootstrapOf(good)?.error, null);
    assert.deepEqual(named(problemsAt(good, Date.now() + 10 * BOOTSTRAP_GRACE_MS)), []);

    // Its bootstrap peer goes away: not connected since then, a problem after the grace.
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    await a.exited;
    await waitFor(
      'the loss in the status',
      async () => bootstrapOf(await status(right.url))?.connected === false,
      60_000,
    );
    const lost = await status(right.url);
    const lostSince = Date.parse(bootstrapOf(lost)?.since ?? '');
    assert.ok(lostSince >= killedAt - 1_000, `since the loss: ${bootstrapOf(lost)?.since}`);
    assert.ok(bootstrapOf(lost)?.error, 'says why');
    assert.deepEqual(named(problemsAt(lost, lostSince + 1_000)), []);
    assert.equal(named(problemsAt(lost, lostSince + BOOTSTRAP_GRACE_MS + 1_000)).length, 1);
  });
});
