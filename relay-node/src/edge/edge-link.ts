import {
  CLOSE_CODES,
  type EdgeFrame,
  edgeFrameSchema,
  encodeRelayFrame,
  type Envelope,
  type RelayFrame,
  BadFrameError,
  CursorExpiredError,
  ForbiddenError,
  refOf,
  parseWith,
  randomId,
  LATEST_PAGE_SOURCES,
  SeenIds,
  toAnodeError,
  utf8Length,
} from '@anode/shared';
import WebSocket from 'ws';
import type { Hub, Subscriber } from '../hub/hub.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';

/**
 * One edge link: a WebSocket this relay dialed into a topic's Durable Object. To the hub it is a
 * subscriber of that topic (mesh messages go out to the edge, catching up from the cursor the
 * Durable Object asks for); publishes accepted at the edge come in with their ids and cursors,
 * are stored durably and then acked. The relay is their way into the mesh, so they are written as
 * accepted here (the mesh gossips them like its own). Their echo is not sent back.
 */
export interface EdgeLinkOptions {
  topic: string;
  url: string;
  nodeId: string;
  secret: string;
  hub: Hub;
  log: Logger;
  maxBufferBytes: number;
  pingMs: number;
  onClose: (link: EdgeLink) => void;
  /** The source names no publish may use (sent after `hello`, so the edge checks before it acks). */
  reserved: () => readonly string[];
  /**
   * Messages accepted from the edge count as published (via `edge`), as the hub counts its own;
   * messages and frames refused count as errors by code, as a client's do.
   */
  metrics?: Pick<Metrics, 'published' | 'errors'>;
  /** This relay's max_message_bytes: told to the edge in `hello`, which applies it when lower than its own. */
  maxMessageBytes?: number;
}

const MSG_ID = /^\{"op":"msg","id":"([^"]+)"/;
/**
 * History pages are cut to about this many UTF-8 bytes of JSON, one message at least (workerd
 * takes WebSocket messages up to 32 MiB; max_message_bytes is at most 16 MiB).
 */
const PAGE_BYTES = 4 * 1024 * 1024;

/**
 * The first messages that fit in PAGE_BYTES serialized (always at least one). Stops at the cut: a
 * filter went on serializing every message past it, so each page of a full late-arrival list
 * (10,000 messages, 32 MiB) serialized the whole rest of it (a review: ~1.1 s of the relay's event
 * loop for one edge resume).
 */
const withinPageBytes = (messages: readonly Envelope[]): Envelope[] => {
  let bytes = 0;
  let taken = 0;
  for (const message of messages) {
    bytes += utf8Length(JSON.stringify(message));
    if (bytes > PAGE_BYTES && taken > 0) break;
    taken += 1;
  }
  return messages.slice(0, taken);
};
/** The Durable Object sends publishes in frames of about 4 MiB of JSON text. */
const LINK_MAX_PAYLOAD = 64 * 1024 * 1024;

export class EdgeLink implements Subscriber {
  readonly id = randomId();
  readonly topic: string;
  readonly url: string;
  readonly since = new Date();
  readonly counts = { in: 0, out: 0 };
  state: 'connecting' | 'open' | 'closed' = 'connecting';
  readonly #ws: WebSocket;
  readonly #options: EdgeLinkOptions;
  readonly #echo = new SeenIds(10_000); // ids that came from the edge (bounded: oldest dropped)
  #ping: ReturnType<typeof setInterval> | undefined;
  #alive = true;

  constructor(options: EdgeLinkOptions) {
    this.#options = options;
    this.topic = options.topic;
    this.url = `${options.url}/v1/edge/link/${encodeURIComponent(options.topic)}`;
    this.#ws = new WebSocket(this.url, {
      headers: { authorization: `Bearer ${options.secret}` },
      perMessageDeflate: false,
      maxPayload: LINK_MAX_PAYLOAD,
      handshakeTimeout: 10_000,
    });
    this.#ws.on('open', () => this.#onOpen());
    this.#ws.on('message', (data, isBinary) => {
      // ws checks UTF-8 in text frames only: a binary frame's bad bytes would be repaired, not refused.
      if (isBinary) return this.#fail(new BadFrameError('binary frames are not supported'), undefined);
      this.#onFrame(String(data));
    });
    this.#ws.on('pong', () => (this.#alive = true));
    this.#ws.on('close', (code) => this.#onClose(code));
    this.#ws.on('error', (error) => options.log.warn({ err: error, topic: this.topic }, 'edge link error'));
  }

  send(frame: string): boolean {
    if (this.state !== 'open') return false;
    const echo = MSG_ID.exec(frame)?.[1];
    if (echo !== undefined && this.#echo.has(echo)) return true; // the edge has it: it came from there
    this.#ws.send(frame);
    if (echo !== undefined) this.counts.out += 1;
    if (this.#ws.bufferedAmount > this.#options.maxBufferBytes) {
      this.close(CLOSE_CODES.slow_consumer, 'edge link too slow; the edge resumes from its last cursor');
      return false;
    }
    return true;
  }

  /** Tell the edge which source names are reserved now (on open, and whenever they change). */
  reserve(sources: readonly string[]): void {
    this.#reply({ op: 'reserved', sources: [...sources] });
  }

  overflow(): void {
    this.close(CLOSE_CODES.slow_consumer, 'edge link fell behind while catching up');
  }

  close(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.#options.hub.removeSubscriber(this);
    this.#ws.close(code, reason);
    setTimeout(() => this.#ws.terminate(), 2_000).unref();
  }

  #onOpen(): void {
    this.state = 'open';
    this.#options.log.info({ topic: this.topic, url: this.url }, 'edge link open');
    // `reserved: true` tells the edge a `reserved` frame follows (an older relay sends none).
    // `max_message_bytes`: an edge whose own limit is higher applies this one, so it never acks
    // a message this relay then refuses (it dropped it from its outbox: lost, acked).
    const max = this.#options.maxMessageBytes;
    this.#reply({
      op: 'hello',
      node: this.#options.nodeId,
      reserved: true,
      ...(max === undefined ? {} : { max_message_bytes: max }),
    });
    this.reserve(this.#options.reserved());
    this.#ping = setInterval(() => {
      if (!this.#alive) return this.#ws.terminate();
      this.#alive = false;
      this.#ws.ping();
    }, this.#options.pingMs);
    this.#ping.unref();
  }

  #onClose(code: number): void {
    clearInterval(this.#ping);
    const was = this.state;
    this.state = 'closed';
    this.#options.hub.removeSubscriber(this);
    this.#options.log.info({ topic: this.topic, code, was }, 'edge link closed');
    this.#options.onClose(this);
  }

  #reply(frame: RelayFrame): void {
    if (this.state === 'open') this.#ws.send(encodeRelayFrame(frame));
  }

  #onFrame(text: string): void {
    let frame: EdgeFrame;
    try {
      frame = parseWith(edgeFrameSchema, JSON.parse(text));
    } catch (error) {
      this.#fail(error instanceof SyntaxError ? new BadFrameError('frame is not valid JSON') : error, refOf(text));
      return;
    }
    this.#handle(frame).catch((error: unknown) => this.#fail(error, frame.ref));
  }

  #fail(error: unknown, ref: string | undefined): void {
    const anode = toAnodeError(error);
    if (anode.code === 'internal') this.#options.log.error({ err: error, topic: this.topic }, 'edge link frame failed');
    this.#options.metrics?.errors.inc({ code: anode.code });
    // A refused resume names the trim mark (the edge restarts its link from it).
    const trimmed = anode instanceof CursorExpiredError ? anode.trimmedThrough : undefined;
    this.#reply({
      op: 'err',
      code: anode.code,
      message: anode.message,
      ...(trimmed === undefined ? {} : { trimmed }),
      ...(ref === undefined ? {} : { ref }),
    });
  }

  /** The message contract for one message from the edge: this link's topic, no reserved source. */
  #check(value: unknown): Envelope {
    const [envelope] = this.#options.hub.checkRemote([value], true) as [Envelope];
    if (envelope.topic !== this.topic) throw new ForbiddenError(`this link carries ${this.topic} only`);
    if (this.#options.hub.isReserved(envelope.source)) {
      throw new ForbiddenError(`source ${envelope.source} is reserved: a source this node pulls`);
    }
    return envelope;
  }

  async #handle(frame: EdgeFrame): Promise<void> {
    const { hub } = this.#options;
    switch (frame.op) {
      case 'sub':
        await hub.subscribe(this, this.topic, frame.after, frame.ref);
        return;
      case 'pub': {
        const envelopes: Envelope[] = [];
        const refused: { id: string | null; code: string; message: string }[] = [];
        for (const value of frame.messages) {
          try {
            envelopes.push(this.#check(value));
          } catch (error) {
            const anode = toAnodeError(error);
            const id = (value as { id?: unknown } | null)?.id;
            refused.push({ id: typeof id === 'string' ? id : null, code: anode.code, message: anode.message });
          }
        }
        for (const { code } of refused) this.#options.metrics?.errors.inc({ code });
        if (refused.length > 0) {
          this.#options.log.warn(
            { topic: this.topic, refused: refused.length, first: refused[0] },
            'edge messages refused',
          );
        }
        for (const envelope of envelopes) {
          this.#echo.add(envelope.id);
          hub.observe(envelope.cursor);
        }
        this.counts.in += envelopes.length;
        // Written as accepted here, not `hub.ingest` (which marks them remote): this relay is how
        // they enter the mesh, and only locally accepted messages are gossiped (hub.onAccepted).
        // `split`: a message the store refuses for good (Cassandra: past max_mutation_size) is named
        // in the ack's `refused` (the edge drops it from its outbox) and the rest are stored and
        // delivered; refused whole, the edge resent the frame, then that message alone, for ever.
        const written = await hub.writer.write(envelopes, 'local', { split: true });
        const results = written.filter((r) => {
          if (!r.refused) return true;
          const anode = toAnodeError(r.refused);
          this.#options.metrics?.errors.inc({ code: anode.code });
          refused.push({ id: r.envelope.id, code: anode.code, message: anode.message });
          return false;
        });
        this.#options.metrics?.published.inc({ via: 'edge' }, results.filter((r) => r.inserted).length);
        const ids = results.map((r) => r.envelope.id);
        this.#reply({ op: 'ack', ref: frame.ref, ids, ...(refused.length > 0 ? { refused } : {}) });
        return;
      }
      case 'history': {
        const page = await hub.history(this.topic, frame.after, frame.limit);
        const messages = withinPageBytes(page.messages);
        const cut = messages.length < page.messages.length;
        this.#reply({
          op: 'history',
          ref: frame.ref,
          messages,
          next: cut ? (messages.at(-1)?.cursor ?? null) : page.next,
        });
        return;
      }
      case 'late': {
        // What this relay's own resume from `after` replays before its history: a late arrival
        // that reached it while the edge's link was closed is in no history page after `after`.
        const all = hub.lateFor(this.topic, frame.after, frame.from);
        const messages = withinPageBytes(all);
        const cut = messages.length < all.length;
        this.#reply({ op: 'late', ref: frame.ref, messages, next: cut ? (messages.at(-1)?.cursor ?? null) : null });
        return;
      }
      case 'latest':
        // One page, as over HTTP (LATEST_PAGE_SOURCES, HISTORY_PAGE_BYTES), with `next` while more
        // follow: unbounded, it was one frame of every source's newest message. An edge from
        // before paging asks neither field and gets the first page.
        this.#reply({
          op: 'latest',
          ref: frame.ref,
          ...(await hub.latest(this.topic, frame.after_source, frame.limit ?? LATEST_PAGE_SOURCES)),
        });
        return;
    }
  }
}
