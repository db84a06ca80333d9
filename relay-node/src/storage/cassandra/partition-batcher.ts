/**
 * Groups the rows one append writes into single-partition batches. Cassandra applies a batch
 * whose rows share a partition as one mutation (no batch log, atomic and isolated): ten history
 * rows of a topic's bucket cost about one INSERT's round trip instead of ten. Rows arriving in the
 * same turn of the event loop (a whole minted batch, or the rows of one settled claim batch) are
 * sent together; a batch stays under Cassandra's 5 KiB batch_size_warn_threshold, and a row
 * bigger than that alone goes as a plain statement.
 */
export interface PartitionRow {
  /** Rows with equal keys share a partition. */
  partition: string;
  /** Approximate serialized size in bytes. */
  bytes: number;
}

export const ROWS_PER_BATCH = 50;
export const BATCH_BYTES = 4_096;

export interface PartitionBatcher<R extends PartitionRow> {
  /** Settles when the batch holding `row` is written (or rejects with its error). */
  write(row: R): Promise<void>;
}

export function createPartitionBatcher<R extends PartitionRow>(
  send: (rows: readonly R[]) => Promise<unknown>,
): PartitionBatcher<R> {
  let queued: { row: R; resolve: () => void; reject: (error: unknown) => void }[] = [];
  const flush = () => {
    const taken = queued;
    queued = [];
    const partitions = new Map<string, typeof taken>();
    for (const item of taken) {
      const group = partitions.get(item.row.partition);
      if (group) group.push(item);
      else partitions.set(item.row.partition, [item]);
    }
    for (const group of partitions.values()) {
      let chunk: typeof taken = [];
      let bytes = 0;
      const go = () => {
        const rows = chunk;
        chunk = [];
        bytes = 0;
        send(rows.map((item) => item.row)).then(
          () => rows.forEach((item) => item.resolve()),
          (error: unknown) => rows.forEach((item) => item.reject(error)),
        );
      };
      for (const item of group) {
        if (chunk.length > 0 && (chunk.length >= ROWS_PER_BATCH || bytes + item.row.bytes > BATCH_BYTES)) go();
        chunk.push(item);
        bytes += item.row.bytes;
      }
      if (chunk.length > 0) go();
    }
  };
  return {
    write: (row) =>
      new Promise<void>((resolve, reject) => {
        if (queued.length === 0) setImmediate(flush);
        queued.push({ row, resolve, reject });
      }),
  };
}
