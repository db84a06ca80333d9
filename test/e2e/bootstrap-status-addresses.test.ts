import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { applyEvent, BOOTSTRAP_GRACE_MS, emptyModel } from '@anode/relay-node/dashboard/src/model.ts';
import type { RelayStatus } from '@anode/relay-node/src/dashboard/status-schema.ts';
import { freePort, waitFor } from '../helpers/mesh.ts';
import { statusEventOf } from '../helpers/status-event.ts';
import { type RelayProcess, spawnRelay, tempDir } from '../helpers/relay.ts';

/**
 * A relay given a wrong bootstrap address (nothing listens there) was alone with a status that
 * said nothing of it. One given its own address (a config shared by every relay) must not be
 * told a peer is missing: that address is left out of `mesh.bootstrap`.
 */
const status = async (url: string) => (await (await fetch(`${url}/v1/status`)).json()) as RelayStatus;

const eventOf = statusEventOf;

describe('bootstrap status: a wrong address and the relay’s own', () => {
  const relays: RelayProcess[] = [];
  after(async () => {
    for (const relay of relays) relay.child.kill('SIGKILL');
    await Promise.all(relays.map((relay) => relay.exited));
  });

  it('lists the refused address with its failure and leaves the relay’s own address out', async () => {
    const own = `/ip4/127.0.0.1/tcp/${await freePort()}`;
    const wrong = `/ip4/127.0.0.1/tcp/${await freePort()}`;
    const relay = await spawnRelay([
      ...['--port', '0', '--data-dir', await tempDir(), '--listen', own],
      ...['--bootstrap', own, '--bootstrap', wrong],
    ]);
    relays.push(relay);

    // Both have been dialled once the refused one has failed and the relay's own was refused too.
    await waitFor(
      'the refused dial in the status',
      async () => !!(await status(relay.url)).mesh?.bootstrap?.[0]?.error,
      60_000,
    );
    await waitFor(
      'the relay to have dialled its own address',
      () => relay.output.join('').includes('dial self'),
      60_000,
    );
    const s = await status(relay.url);
    assert.deepEqual(
      s.mesh?.bootstrap?.map((b) => b.address),
      [wrong],
      'only the wrong address is listed',
    );
    const [entry] = s.mesh?.bootstrap ?? [];
    assert.equal(entry?.connected, false);
    assert.match(entry?.error ?? '', /^bootstrap dial failed: .*ECONNREFUSED/);

    const since = Date.parse(entry?.since ?? '');
    const named = (at: number) =>
      applyEvent(emptyModel(), eventOf(s, at)).problems.filter((p) => p.startsWith('Bootstrap peer'));
    assert.deepEqual(named(since + 1_000), [], 'not within the grace after the start');
    assert.deepEqual(named(since + BOOTSTRAP_GRACE_MS + 1_000), [
      `Bootstrap peer ${wrong} unreachable: ${entry?.error}`,
    ]);
  });
});

describe('bootstrap status: a bootstrap peer that starts late and dials this relay', () => {
  const relays: RelayProcess[] = [];
  after(async () => {
    for (const relay of relays) relay.child.kill('SIGKILL');
    await Promise.all(relays.map((relay) => relay.exited));
  });

  it('is listed connected once it is identified, not only at this relay’s next redial', async () => {
    // A's redials of B back off (0.5 s doubling): by the time B starts and dials A, A's next
    // redial is seconds away. Its status said B unreachable meanwhile (the page too), with B
    // among its connected peers.
    const addrA = `/ip4/127.0.0.1/tcp/${await freePort()}`;
    const addrB = `/ip4/127.0.0.1/tcp/${await freePort()}`;
    const a = await spawnRelay(['--port', '0', '--data-dir', await tempDir(), '--listen', addrA, '--bootstrap', addrB]);
    relays.push(a);
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const b = await spawnRelay(['--port', '0', '--data-dir', await tempDir(), '--listen', addrB, '--bootstrap', addrA]);
    relays.push(b);
    await waitFor('A to have B as a peer', async () => ((await status(a.url)).peers?.length ?? 0) > 0, 60_000, 100);
    await waitFor(
      'A to list B’s address as connected',
      async () => (await status(a.url)).mesh?.bootstrap?.[0]?.connected === true,
      2_000,
      100,
    );
    const now = Date.now();
    const problems = applyEvent(emptyModel(), eventOf(await status(a.url), now + BOOTSTRAP_GRACE_MS)).problems;
    assert.deepEqual(
      problems.filter((p) => p.startsWith('Bootstrap')),
      [],
    );
  });
});
