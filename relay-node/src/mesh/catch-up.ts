import type { Envelope, MessageStore } from '@anode/shared';
import type { PeerId, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import type { Logger } from '../logger.ts';
import { validateEnvelope } from './gossip-codec.ts';
import type { Host } from './host.ts';
import type { Shards } from './shards.ts';

/**
 * The catch-up protocol (`/anode/catch-up/1.0.0`): history by cursor range over a libp2p
 * stream, like Waku's store protocol. The client sends requests and the server answers each
 * with one frame; every frame is a varint-length-prefixed UTF-8 JSON object:
 *
 * - `{"op":"topics","shards":[n…],"shard_count":N}` → `{"topics":["t"…]}`: the server's stored
 *   topics in those shards.
 * - `{"op":"history","topic":"t","after":"<cursor>","limit":n}` → `{"messages":[envelope…],
 *   "next":"<cursor>"|null}`: stored messages of `t` with cursor > `after`, ascending; `next` is
 *   where the following page starts, null at the end.
 * - anything else → `{"error":"…"}`, and the server closes the stream.
 *
 * The client closes the stream when done. Every envelope received is validated like gossip.
 */
export const CATCH_UP_PROTOCOL = '/anode/catch-up/1.0.0';
const PAGE_LIMIT = 500;
const PAGE_BYTES = 512 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const isEof = (error: unknown) => (error as Error)?.name === 'UnexpectedEOFError';

const frames = (stream: Stream, maxMessageBytes: number) => {
  const lp = lpStream(stream, { maxDataLength: PAGE_BYTES + maxMessageBytes + 64 * 1024 });
  return {
    async read(): Promise<Record<string, unknown>> {
      const value: unknown = JSON.parse(
        decoder.decode((await lp.read({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })).subarray()),
      );
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        throw new Error('frame is not an object');
      return value as Record<string, unknown>;
    },
    write: (value: unknown) => lp.write(encoder.encode(JSON.stringify(value))),
  };
};

/** Serve catch-up requests from this node's store. */
export function serveCatchUp(
  host: Host,
  deps: { store: MessageStore; shards: Shards; maxMessageBytes: number; log: Logger },
) {
  const { store, shards, log } = deps;
  const answer = async (request: Record<string, unknown>) => {
    if (request.op === 'topics') {
      if (request.shard_count !== shards.count) return { error: `shard count ${shards.count} here` };
      const wanted = Array.isArray(request.shards) ? new Set(request.shards) : undefined;
      const topics = (await store.topics()).filter((topic) => !wanted || wanted.has(shards.of(topic)));
      return { topics };
    }
    if (request.op === 'history' && typeof request.topic === 'string' && typeof request.after === 'string') {
      const limit = Math.min(PAGE_LIMIT, Math.max(1, Number(request.limit) || PAGE_LIMIT));
      const page = await store.history(request.topic, { after: request.after, limit });
      const messages: Envelope[] = [];
      let bytes = 0;
      for (const envelope of page) {
        if (messages.length > 0 && bytes >= PAGE_BYTES) break;
        messages.push(envelope);
        bytes += JSON.stringify(envelope.data ?? null).length + 200;
      }
      const more = messages.length < page.length || page.length === limit;
      return { messages, next: more ? (messages.at(-1)?.cursor ?? null) : null };
    }
    return { error: 'unknown request' };
  };
  return host.handle(
    CATCH_UP_PROTOCOL,
    async (stream) => {
      const io = frames(stream, deps.maxMessageBytes);
      try {
        for (;;) {
          const response = await answer(await io.read());
          await io.write(response);
          if ('error' in response) break;
        }
        await stream.close();
      } catch (error) {
        if (!isEof(error)) log.debug({ err: error }, 'catch-up request failed');
        stream.abort(error as Error);
      }
    },
    { runOnLimitedConnection: true, maxInboundStreams: 8 },
  );
}

export interface CatchUpRequest {
  peer: PeerId;
  shards: readonly number[];
  after: string;
  /** Stores (or fans out) one page; resolves when it is done. */
  ingest(envelopes: Envelope[]): Promise<number>;
  signal?: AbortSignal;
}

/** Fetch everything `peer` stored after a cursor in the given shards; resolves with how many were new here. */
export async function catchUpFrom(host: Host, shards: Shards, maxMessageBytes: number, request: CatchUpRequest) {
  // Use the connection there is, relayed or not: dialling would open another one.
  const open = host.getConnections(request.peer).filter((c) => c.status === 'open');
  const connection = open.find((c) => c.limits === undefined) ?? open[0];
  if (!connection) throw new Error(`not connected to ${request.peer.toString()}`);
  const stream = await connection.newStream(CATCH_UP_PROTOCOL, {
    runOnLimitedConnection: true,
    signal: request.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const io = frames(stream, maxMessageBytes);
  const ask = async (frame: Record<string, unknown>) => {
    await io.write(frame);
    const response = await io.read();
    if (typeof response.error === 'string') throw new Error(`catch-up refused: ${response.error}`);
    return response;
  };
  let fresh = 0;
  try {
    const { topics } = await ask({ op: 'topics', shards: request.shards, shard_count: shards.count });
    const wanted = new Set(request.shards);
    for (const topic of Array.isArray(topics) ? topics : []) {
      if (typeof topic !== 'string' || !wanted.has(shards.of(topic))) continue;
      let after: string | null = request.after;
      while (after !== null) {
        request.signal?.throwIfAborted();
        const page = await ask({ op: 'history', topic, after, limit: PAGE_LIMIT });
        const envelopes = (Array.isArray(page.messages) ? page.messages : []).flatMap((value: unknown) => {
          const decoded = validateEnvelope(value);
          return decoded.ok && decoded.envelope.topic === topic ? [decoded.envelope] : [];
        });
        fresh += await request.ingest(envelopes);
        const next: unknown = page.next;
        after = typeof next === 'string' && next > after ? next : null;
      }
    }
    await stream.close();
    return fresh;
  } catch (error) {
    stream.abort(error as Error);
    throw error;
  }
}
