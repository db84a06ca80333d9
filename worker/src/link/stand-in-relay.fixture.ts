import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket } from 'ws';

/** A frame an edge sends on its link, as far as the stand-in relays below read it. */
export interface LinkFrame {
  op: string;
  ref?: string;
  after?: string;
  /** `late`: the page's lower bound. */
  from?: string;
  messages?: { id: string; source?: string }[];
}

type Link = { topic: string; send(frame: unknown): void };

/**
 * The plain answers of a scripted relay: `sub` subscribed from its `after`, `pub` acked whole,
 * `history` and `late` empty unless `answers` says otherwise.
 */
export function answerAsRelay(
  frame: LinkFrame,
  link: Link,
  answers: { history?: (frame: LinkFrame, link: Link) => void; late?: (frame: LinkFrame, link: Link) => void } = {},
) {
  if (frame.op === 'sub') {
    link.send({ op: 'subscribed', topic: link.topic, cursor: frame.after ?? '0', ref: frame.ref });
  } else if (frame.op === 'pub') {
    link.send({ op: 'ack', ref: frame.ref, ids: (frame.messages ?? []).map((m) => m.id) });
  } else if (frame.op === 'history') {
    if (answers.history) answers.history(frame, link);
    else link.send({ op: 'history', ref: frame.ref, messages: [], next: null });
  } else if (frame.op === 'late') {
    if (answers.late) answers.late(frame, link);
    else link.send({ op: 'late', ref: frame.ref, messages: [], next: null });
  }
}

/**
 * A stand-in for a relay in edge tests (a test double: the behaviour under test is a relay's
 * that no relay of this repository has, old or misbehaving): it takes `POST /v1/edge/dial`,
 * dials the edge's link back with the secret, says `hello` (and an empty reserved list unless
 * `oldRelay`), and hands every frame the edge sends to `onFrame` with a way to answer.
 */
export async function startStandInRelay(options: {
  secret: string;
  node: string;
  /** A relay older than the `reserved` frame: `hello` without `reserved: true`, and no list. */
  oldRelay?: boolean;
  onFrame(frame: LinkFrame, link: { topic: string; send(frame: unknown): void }): void;
}) {
  const links: WebSocket[] = [];
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://relay');
    if (request.method !== 'POST' || url.pathname !== '/v1/edge/dial') return void response.writeHead(404).end();
    response.writeHead(202).end();
    const topic = url.searchParams.get('topic') ?? '';
    const edgeWs = (url.searchParams.get('edge') ?? '').replace(/^http/, 'ws');
    const link = new WebSocket(`${edgeWs}/v1/edge/link/${encodeURIComponent(topic)}`, {
      headers: { authorization: `Bearer ${options.secret}` },
    });
    links.push(link);
    const send = (frame: unknown) => link.send(JSON.stringify(frame));
    link.on('open', () => {
      if (options.oldRelay) return send({ op: 'hello', node: options.node });
      send({ op: 'hello', node: options.node, reserved: true });
      send({ op: 'reserved', sources: [] });
    });
    link.on('message', (data) => options.onFrame(JSON.parse(String(data)) as LinkFrame, { topic, send }));
    link.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    links,
    /** Cut every link without a close (the edge sees it drop). */
    dropLinks() {
      for (const link of links) link.terminate();
    },
    async stop() {
      for (const link of links) link.terminate();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
