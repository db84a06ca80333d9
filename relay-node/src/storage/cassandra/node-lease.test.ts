import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type cassandra from 'cassandra-driver';
import { createNodeLease, type LeaseIo } from './node-lease.ts';

// The lease against real Cassandra: test/cassandra/cassandra-store.test.ts. Here, the answers
// Cassandra may lose (a statement applied, its answer timed out) and a stop during a renewal,
// which a real server does not produce on demand.

/** Test double: the `node_leases` table with LWT semantics and TTL, in memory. */
function fakeLeaseTable() {
  let row: { holder: string; renewed_at: Date; expires: number } | undefined;
  const live = () => (row && row.expires > Date.now() ? row : (row = undefined));
  const answer = (r: Record<string, unknown>) => ({ first: () => r }) as unknown as cassandra.types.ResultSet;
  const exec = async (query: string, params: unknown[]) => {
    const current = live();
    if (query.startsWith('INSERT')) {
      const [, name, at, ttl] = params as [string, string, Date, number];
      if (current) return answer({ '[applied]': false, holder: current.holder, renewed_at: current.renewed_at });
      row = { holder: name, renewed_at: at, expires: Date.now() + ttl * 1000 };
      return answer({ '[applied]': true });
    }
    if (query.startsWith('UPDATE')) {
      const [ttl, to, at, , from] = params as [number, string, Date, string, string];
      if (current?.holder !== from) return answer({ '[applied]': false, holder: current?.holder });
      row = { holder: to, renewed_at: at, expires: Date.now() + ttl * 1000 };
      return answer({ '[applied]': true });
    }
    if (query.startsWith('DELETE')) {
      const [, name] = params as [string, string];
      if (current?.holder !== name) return answer({ '[applied]': false });
      row = undefined;
      return answer({ '[applied]': true });
    }
    throw new Error(`unexpected statement ${query}`);
  };
  return { exec, holder: () => live()?.holder };
}

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
const folder = () => {
  const dir = mkdtempSync(join(tmpdir(), 'anode-node-lease-'));
  dirs.push(dir);
  return dir;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const base = { keyspace: 'k', nodeId: 'n1', holder: 'relay-1 /var/lib/anode', leaseS: 30, renewMs: 50, pollMs: 20 };

describe('node-id lease (test double for the table)', () => {
  it('keeps its lease when renewals are applied but their answers are lost', async () => {
    const table = fakeLeaseTable();
    // Each renewal's first statement is applied, and then its answer is lost, several times over.
    let lose = 0;
    const io: LeaseIo = {
      async exec(query, params) {
        const result = await table.exec(query, params);
        if (lose > 0 && query.startsWith('UPDATE')) {
          lose--;
          throw new Error('timed out (applied)');
        }
        return result;
      },
    };
    const lease = createNodeLease(io, { ...base, tokenFile: join(folder(), 'node-lease') });
    await lease.take();
    lose = 5;
    const until = async (done: () => boolean, what: string) => {
      for (const deadline = Date.now() + 20_000; !done(); await sleep(20)) {
        if (Date.now() > deadline) assert.fail(`never ${what}`);
      }
    };
    await until(() => lose === 0, 'renewed five times');
    const held = table.holder();
    await until(() => table.holder() !== held, 'renewed after the lost answers');
    assert.equal(lease.problem, undefined, 'its own name in the row is not another relay');
    await lease.release();
    assert.equal(table.holder(), undefined, 'given up');
  });

  it('a clean stop during a renewal gives up the name that renewal put in the row', async () => {
    const table = fakeLeaseTable();
    let hold: Promise<void> | undefined;
    let entered!: () => void;
    const inRenewal = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const io: LeaseIo = {
      async exec(query, params) {
        if (query.startsWith('UPDATE') && !hold) {
          hold = new Promise<void>((r) => (release = r));
          entered();
          await hold;
        }
        return table.exec(query, params);
      },
    };
    const lease = createNodeLease(io, { ...base, tokenFile: join(folder(), 'node-lease') });
    await lease.take();
    await inRenewal;
    const stopping = lease.release();
    release();
    await stopping;
    await sleep(150);
    assert.equal(table.holder(), undefined, 'no lease left behind, none taken again');
  });

  it('writes no token file once released, though a renewal answers after the release gave up', async () => {
    const table = fakeLeaseTable();
    let entered!: () => void;
    const inRenewal = new Promise<void>((r) => (entered = r));
    let answer!: () => void;
    const answered = new Promise<void>((r) => (answer = r));
    let held = false;
    const io: LeaseIo = {
      async exec(query, params) {
        if (query.startsWith('UPDATE') && !held) {
          held = true;
          entered();
          await answered; // Cassandra answers late, applied
        }
        return table.exec(query, params);
      },
    };
    const dir = folder();
    const lease = createNodeLease(io, { ...base, tokenFile: join(dir, 'node-lease') });
    await lease.take();
    await inRenewal;
    // The store's close waits for the release only so long (closeTimeoutMs), then goes on.
    const releasing = lease.release();
    assert.equal(await Promise.race([releasing.then(() => 'released'), sleep(50).then(() => 'gave up')]), 'gave up');
    const folderAt = () => ({ files: readdirSync(dir).sort(), token: readFileSync(join(dir, 'node-lease'), 'utf8') });
    const atClose = folderAt();
    answer();
    await releasing;
    assert.deepEqual(folderAt(), atClose, 'the folder as it was when the store closed');
    assert.equal(table.holder(), undefined, 'the renewed name given up all the same');
  });

  it('a restart reads the token its last run wrote when it takes the lease, not before', async () => {
    const table = fakeLeaseTable();
    const dir = folder();
    let killed = false;
    const original = createNodeLease(
      { exec: (query, params) => (killed ? Promise.reject(new Error('killed')) : table.exec(query, params)) },
      { ...base, tokenFile: join(dir, 'node-lease') },
    );
    await original.take();
    // Made before the original's last renewals (a store connects and migrates first).
    const restarted = createNodeLease(table, { ...base, tokenFile: join(dir, 'node-lease') });
    await sleep(150); // renewed, under new names, a few times
    killed = true; // SIGKILL: the row stays, under the name the original wrote last
    // and it writes no more token files: its renewals stop with it (release's DELETE is refused).
    await original.release();
    await sleep(60);
    const name = table.holder();
    assert.ok(name?.startsWith(`${base.holder} #`));
    const started = Date.now();
    await restarted.take();
    // Waiting out the lease would take its 30 s.
    assert.ok(Date.now() - started < 5_000, `took it back after ${Date.now() - started} ms`);
    assert.notEqual(table.holder(), name);
    await restarted.release();
    assert.equal(table.holder(), undefined);
  });

  it('is not taken by a copy of the folder elsewhere, nor by a clone whose token is stale', async () => {
    const table = fakeLeaseTable();
    const dir = folder();
    const original = createNodeLease(table, { ...base, tokenFile: join(dir, 'node-lease') });
    await original.take();
    const clone = folder();
    cpSync(join(dir, 'node-lease'), join(clone, 'node-lease'));
    await sleep(150); // the original renews after the copy was made
    // Same host name and path (a cloned VM): only the token tells them apart.
    const twin = createNodeLease(table, { ...base, tokenFile: join(clone, 'node-lease') });
    await assert.rejects(twin.take(), /node id n1 is in use by another relay/);
    // Another folder on this host, with the original's token file.
    const elsewhere = createNodeLease(table, {
      ...base,
      holder: 'relay-1 /srv/copy',
      tokenFile: join(clone, 'node-lease'),
    });
    await assert.rejects(elsewhere.take(), /in use by another relay/);
    assert.equal(original.problem, undefined);
    await original.release();
  });
});
