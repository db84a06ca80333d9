import type { Envelope } from '../frames.ts';

/**
 * MessageStore: the storage port every adapter (embedded SQLite, Cassandra, …) implements, and
 * that one compliance suite checks.
 *
 * - `append` is idempotent by `id`: a message whose id is already stored is not written again,
 *   and its stored copy is returned with `inserted: false`. Results are in input order. When the
 *   promise resolves, every message is durable (this is what an ack promises).
 * - `append` also keeps the latest message per (topic, source) by `ts`: an older `ts` never
 *   replaces a newer one; on equal `ts` the greater id wins, so replicas converge.
 * - `history` returns a topic's messages with cursor strictly greater than `after` (from the
 *   oldest retained when absent), ascending by cursor, at most `limit` of them; `limit: 0`
 *   returns none. Without `maxBytes`, fewer than `limit` means there are no more. With it, the
 *   page also stops before the message that would take its serialized `data` (UTF-8 bytes of
 *   the data's JSON, summed) past `maxBytes`, but holds at least one message when any is there;
 *   a page may then be short while more follow (only an empty page means the end), and a store
 *   holds about one message past the budget in memory at most while reading it. A client read
 *   without `maxBytes` could make a store load `limit` messages of any size at once.
 * - Retention deletes old messages; `trimmedThrough` says up to which cursor a topic lost
 *   messages to retention, so a resume from an older cursor is refused (`cursor_expired`)
 *   instead of silently skipping a gap. `trimmedTopics` lists every topic with such a mark,
 *   those retention emptied included (`topics` no longer lists them, and a pattern resume must
 *   still refuse a cursor from before what they lost).
 *
 * What "idempotent" and "durable" rest on, per adapter:
 * - Embedded (SQLite): one process, one transaction per append, fsynced: exact.
 * - Cassandra: an ack means the rows reached the write consistency level (default LOCAL_QUORUM:
 *   a majority of the local DC's replicas; with reads at LOCAL_QUORUM too, every later read in
 *   that DC sees them). An id without a key (`messageId()`) is minted once with its cursor, so
 *   its every copy is the same row and a plain upsert is idempotent at any level. A content-addressed id
 *   (idempotency key) is claimed with a lightweight transaction at the serial consistency
 *   (default LOCAL_SERIAL): exactly one cursor wins among relays in one DC, however many
 *   accept it at once (SERIAL extends that across DCs), for as long as retention keeps the
 *   claim. The claims of one append that share a claim partition (topic, shard) go in one
 *   conditional batch, one Paxos round. The data is stored once, in history, after its claim.
 *   `inserted` is exact for keyed ids; for a random id from elsewhere (gossip, catch-up) it
 *   comes from a read, so two relays storing the same copy at the same instant may both say new
 *   (each then delivers it to its own subscribers once; the row is still one).
 * - Spooling store (in front of Cassandra) while Cassandra is away: appends are durable in the
 *   local spool; a duplicate of an id in the spool or among the last ids Cassandra returned is
 *   answered with that copy; an id stored in Cassandra before that is not visible, so it is
 *   acknowledged as new under its new cursor, and the drain keeps the first copy (history holds
 *   it once; live subscribers may see the id twice, and clients drop the second by id). Reads
 *   fail with `unavailable` until Cassandra is back. The spool holds at most `spool_max_bytes`
 *   of envelopes: an append that would pass it is refused whole with `unavailable` (nothing
 *   already spooled is dropped). A message the remote store refuses for good, for itself alone
 *   (not an outage: a write past Cassandra's native_transport_max_frame_size or max_mutation_size;
 *   every other error answer is an outage), is refused, not spooled; so is one the store already
 *   knows it cannot take while the spool takes appends without it (Cassandra's size check against
 *   the limits read at connect): never acked. One spooled before the store could refuse it is
 *   moved aside while draining (kept in the spool file's `spool_rejected`, logged, counted), so it
 *   never blocks what queues behind it; refused by the store's own size check, at once, however
 *   many in a row; refused by Cassandra's answer, unless several rows in a row are refused so with
 *   none stored between them: the drain then stops as in an outage and keeps them. Once another
 *   relay holds this node id (Cassandra's lease, `node_id_in_use`), appends
 *   are refused whether the spool is empty or not; what it holds stays, undrained, until the
 *   lease is back. Pinned by spooling-store.test.ts, spool-limit.test.ts and
 *   test/cassandra/spool-refusals.test.ts.
 */
export interface MessageStore {
  readonly kind: string;
  /**
   * An append called while another is still in flight commits after it, and each stands on its
   * own (one failing leaves the other alone). The hub's writer may then hand over its next batch
   * before the previous one has answered. Absent: one append at a time.
   */
  readonly pipelinedAppends?: boolean;
  /**
   * Called once as the node starts, before it serves. A store that finds it must not serve this
   * node throws, and the node does not start (Cassandra: another relay holds this node id). A
   * store that cannot reach its backend resolves: writes spool meanwhile.
   */
  open?(): Promise<void>;
  append(messages: readonly Envelope[], options?: AppendOptions): Promise<AppendResult[]>;
  history(topic: string, query: HistoryQuery): Promise<Envelope[]>;
  /**
   * The newest message per source (by `ts`, then id). With `query`: one page, the sources after
   * `query.after` in source order (UTF-8 byte order), at most `limit` of them and cut at `maxBytes`
   * of data (one always), read in bounded steps so memory stays bounded too. Without: every source
   * (tests and tools; the hub always pages).
   */
  latest(topic: string, query?: LatestQuery): Promise<Record<string, Envelope>>;
  /** Topics with at least one stored message (for pattern resumes and status). */
  topics(): Promise<string[]>;
  trimmedThrough(topic: string): Promise<string | undefined>;
  /**
   * Every topic retention has trimmed past `after` (all trimmed, without it), with its
   * `trimmedThrough` mark: the topics it emptied too, which `topics` leaves out. A pattern resume
   * from `after` is refused (`cursor_expired`) if one of them matches, so a topic whose every
   * message expired is not skipped. Only marks past `after` are asked for: a resume from a recent
   * cursor reads next to nothing (embedded: an index on the mark; Cassandra: no read while
   * `after` is younger than the TTL horizon, else `topic_first` against it; the spooling and
   * held stores ask the store behind them). Absent (a test double): the hub checks the topics
   * `topics` lists, one `trimmedThrough` each.
   */
  trimmedTopics?(after?: string): Promise<Map<string, string>>;
  /**
   * Apply the retention policy now; returns how many messages were deleted. `counts.latestDeleted`
   * is increased by the latest rows it deleted (the embedded store's age limit; a copy of a
   * message each, so not in the number returned).
   */
  sweep(nowMs?: number, counts?: { latestDeleted: number }): Promise<number>;
  health(): Promise<StoreHealth>;
  close(): Promise<void>;
}

export interface HistoryQuery {
  after?: string;
  limit: number;
  /** Bound on the page's serialized `data` in bytes (see `history` above); absent: count only. */
  maxBytes?: number;
  /**
   * Called by a store that can with the topic's `trimmedThrough` as of the moment the page was
   * read (embedded: one read transaction), so whether retention took messages past `after` from
   * under the page is decided on the page itself. Two reads leave a sweep room between them: a
   * mark read after the page refused a page read whole (a false `cursor_expired`); one read before
   * it missed the hole the sweep then made (a silent gap). A store that cannot does not call it
   * (Cassandra: a TTL expires continuously, at no one moment); see pageAndMark.
   */
  onTrimmedThrough?: (trimmedThrough: string | undefined) => void;
}

export interface LatestQuery {
  /** Only sources after this one (exclusive), in source order. */
  after?: string;
  limit: number;
  /** Bound on the page's serialized `data` in bytes (the first source always fits). */
  maxBytes?: number;
}

export interface AppendOptions {
  /**
   * `minted[i]`: the caller created `messages[i]` itself just now (a publish: a new cursor, and
   * a random id unless it is content-addressed). A store may then skip looking for an earlier
   * copy of a random id, which cannot exist. Absent or false: the message may have been stored
   * before (gossip, catch-up, an edge link's resend), and the store checks.
   */
  minted?: readonly boolean[];
}

export interface AppendResult {
  /** The stored envelope: the new one, or the one already stored under that id. */
  envelope: Envelope;
  inserted: boolean;
  /**
   * Not stored: another message (another id) holds this envelope's (topic, cursor). A node's
   * cursors are unique, so only a second node minting under the same node id causes it (a data
   * folder copied to another machine). `inserted` is false and `envelope` is the one given; the
   * writer refuses a local publish with `internal`. The embedded store reports it; Cassandra keeps
   * the later message under that cursor (its history row is keyed by it) and does not.
   */
  conflict?: true;
}

export interface StoreHealth {
  ok: boolean;
  detail?: string;
  [key: string]: unknown;
}

export interface RetentionPolicy {
  /** Delete messages whose cursor is older than this many ms; 0 keeps them forever. */
  maxAgeMs: number;
  /** Keep at most this many messages per topic; 0 means no limit. */
  maxMessages: number;
}
