import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cursorFloor } from '@anode/shared';
import cassandra from 'cassandra-driver';
import { recordBucketMs } from './schema.ts';

/**
 * How a keyspace with no bucket size recorded (written by relays from before schema 5) is checked
 * against a relay's cassandra_bucket_ms, from its history rows. A test double of the driver's
 * client (the queries' answers only); test/cassandra/cassandra-bucket-record.test.ts runs the same
 * against a real Cassandra.
 */
const HOUR = 3_600_000;
const MINUTE = 60_000;
const NOW = Date.UTC(2026, 11, 2, 12);

const fakeClient = (rows: { bucket: unknown; cursor: string }[] | Error) => {
  const recorded: string[] = [];
  const client = {
    async execute(cql: string, params?: unknown[]) {
      if (/SELECT value FROM .*keyspace_settings/.test(cql)) return { rows: [], first: () => null };
      if (/SELECT bucket, cursor FROM .*messages/.test(cql)) {
        if (rows instanceof Error) throw rows;
        return { rows, first: () => rows[0] ?? null };
      }
      if (/INSERT INTO .*keyspace_settings/.test(cql)) {
        recorded.push(String(params?.[0]));
        return { rows: [{ '[applied]': true }], first: () => ({ '[applied]': true }) };
      }
      throw new Error(`unexpected ${cql}`);
    },
  };
  return { client: client as unknown as cassandra.Client, recorded };
};
const row = (at: number, size: number) => ({
  bucket: cassandra.types.Long.fromNumber(Math.floor(at / size)),
  cursor: `${cursorFloor(at).slice(0, 16)}-x`,
});

describe('Cassandra: an unrecorded keyspace bucket size, told from its rows', () => {
  it('refuses a size its rows do not fit, naming the range, and takes one they fit', async () => {
    const rows = Array.from({ length: 10 }, (_, i) => row(NOW - i * 7_000_000, HOUR));
    const other = fakeClient(rows);
    await assert.rejects(recordBucketMs(other.client, 'ks', MINUTE, {}, 1_000), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'bucket_size_mismatch');
      assert.match(error.message, /between \d+ and \d+ \(3600000, the default, fits\)/);
      return true;
    });
    assert.deepEqual(other.recorded, []);
    const same = fakeClient(rows);
    assert.equal(await recordBucketMs(same.client, 'ks', HOUR, {}, 1_000), HOUR);
    assert.deepEqual(same.recorded, [String(HOUR)]);
  });

  it('takes any size, saying so, when its rows were written with more than one', async () => {
    // cassandra_bucket_ms changed once before it was recorded: 1 min, then 1 h.
    const rows = [
      ...Array.from({ length: 10 }, (_, i) => row(NOW - 5 * 86_400_000 + i * 1_000, MINUTE)),
      ...Array.from({ length: 10 }, (_, i) => row(NOW - HOUR + i * 1_000, HOUR)),
    ];
    for (const size of [MINUTE, HOUR, 2 * HOUR]) {
      const warnings: string[] = [];
      const { client, recorded } = fakeClient(rows);
      // Before: every size was refused, with a range whose start was past its end.
      assert.equal(await recordBucketMs(client, 'ks', size, {}, 1_000, (message) => warnings.push(message)), size);
      assert.deepEqual(recorded, [String(size)]);
      assert.match(warnings.join('\n'), /more than one cassandra_bucket_ms/);
    }
  });

  it('records the size unchecked, saying so, when the rows cannot be read', async () => {
    const warnings: string[] = [];
    const { client, recorded } = fakeClient(new Error('Operation timed out (test double)'));
    assert.equal(await recordBucketMs(client, 'ks', MINUTE, {}, 1_000, (message) => warnings.push(message)), MINUTE);
    assert.deepEqual(recorded, [String(MINUTE)]);
    assert.match(warnings.join('\n'), /could not read its history rows .*timed out/);
  });
});
