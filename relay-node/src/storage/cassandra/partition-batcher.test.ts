import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BATCH_BYTES, createPartitionBatcher, type PartitionRow, ROWS_PER_BATCH } from './partition-batcher.ts';

interface Row extends PartitionRow {
  n: number;
}

describe('partition batcher', () => {
  it('sends the rows of one turn grouped by partition, in order, within the count and size bounds', async () => {
    const sent: Row[][] = [];
    const batcher = createPartitionBatcher<Row>(async (rows) => {
      sent.push([...rows]);
    });
    const rows: Row[] = [
      ...Array.from({ length: ROWS_PER_BATCH + 5 }, (_, n) => ({ partition: 'a', bytes: 10, n })),
      ...Array.from({ length: 3 }, (_, n) => ({ partition: 'b', bytes: 10, n: 100 + n })),
      { partition: 'c', bytes: BATCH_BYTES + 1, n: 200 }, // bigger than a batch: alone
      { partition: 'c', bytes: BATCH_BYTES - 100, n: 201 },
      { partition: 'c', bytes: 200, n: 202 }, // would pass BATCH_BYTES with 201: next batch
    ];
    await Promise.all(rows.map((r) => batcher.write(r)));
    assert.deepEqual(
      sent.map((batch) => batch.map((r) => r.n)),
      [Array.from({ length: ROWS_PER_BATCH }, (_, n) => n), [50, 51, 52, 53, 54], [100, 101, 102], [200], [201], [202]],
    );
    for (const batch of sent) assert.equal(new Set(batch.map((r) => r.partition)).size, 1, 'one partition per batch');
  });

  it('rejects exactly the rows of a batch that failed, and a later turn starts new batches', async () => {
    const sent: number[][] = [];
    const batcher = createPartitionBatcher<Row>(async (rows) => {
      sent.push(rows.map((r) => r.n));
      if (rows[0]?.partition === 'bad') throw new Error('write timeout');
    });
    const results = await Promise.allSettled([
      batcher.write({ partition: 'ok', bytes: 1, n: 1 }),
      batcher.write({ partition: 'bad', bytes: 1, n: 2 }),
      batcher.write({ partition: 'bad', bytes: 1, n: 3 }),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'rejected'],
    );
    await batcher.write({ partition: 'ok', bytes: 1, n: 4 });
    assert.deepEqual(sent, [[1], [2, 3], [4]]);
  });
});
