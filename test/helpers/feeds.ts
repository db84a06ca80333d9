import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/** An item a feed produces: `id` unique per feed, `ts` its source timestamp. */
export interface FeedItem {
  id: string;
  ts: number;
  [key: string]: unknown;
}

export type HttpMode = 'ok' | 'error' | 'garbage' | 'hang';

/**
 * Loopback upstreams for source tests, on one free port. HTTP feeds (`/http/<name>`) answer the
 * last `window` items as `{"items":[…]}` with an ETag (304 when unchanged), or fail as told:
 * 500s, garbage, or hanging. WebSocket feeds (`/ws/<name>`) send all items so far on connect
 * (a snapshot, like many real feeds), then each new item; `drop` cuts their connections.
 */
export async function startFeeds(options: { window?: number } = {}) {
  const window = options.window ?? 5;
  const items = new Map<string, FeedItem[]>();
  const modes = new Map<string, HttpMode>();
  const hits = new Map<string, number[]>();
  const subscribeFrames = new Map<string, unknown[]>();
  const sockets = new Map<string, Set<WebSocket>>();
  const hanging = new Set<ServerResponse>();
  const listOf = (name: string) => items.get(name) ?? [];

  const onHttp = (request: IncomingMessage, response: ServerResponse) => {
    const name = /^\/http\/([^/?]+)/.exec(request.url ?? '')?.[1];
    if (!name) return void response.writeHead(404).end();
    hits.set(name, [...(hits.get(name) ?? []), Date.now()]);
    const mode = modes.get(name) ?? 'ok';
    if (mode === 'hang') {
      hanging.add(response);
      response.once('close', () => hanging.delete(response));
      return;
    }
    if (mode === 'error') return void response.writeHead(500).end('{"error":"upstream broke"}');
    if (mode === 'garbage')
      return void response.writeHead(200, { 'content-type': 'application/json' }).end('<html>oops');
    const list = listOf(name);
    const etag = `"${name}-${list.length}"`;
    if (request.headers['if-none-match'] === etag) return void response.writeHead(304, { etag }).end();
    response.writeHead(200, { 'content-type': 'application/json', etag });
    response.end(JSON.stringify({ items: list.slice(-window) }));
  };

  const server = createServer(onHttp);
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, request) => {
    const name = /^\/ws\/([^/?]+)/.exec(request.url ?? '')?.[1] ?? '';
    let set = sockets.get(name);
    if (!set) sockets.set(name, (set = new Set()));
    set.add(ws);
    ws.on('close', () => set.delete(ws));
    ws.on('message', (data) =>
      subscribeFrames.set(name, [...(subscribeFrames.get(name) ?? []), JSON.parse(String(data))]),
    );
    ws.send(JSON.stringify({ items: listOf(name) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    httpUrl: (name: string) => `http://127.0.0.1:${port}/http/${name}`,
    wsUrl: (name: string) => `ws://127.0.0.1:${port}/ws/${name}`,
    /** Produce an item on a feed (pushed at once to its WebSocket listeners). */
    push(name: string, item: FeedItem) {
      items.set(name, [...listOf(name), item]);
      for (const ws of sockets.get(name) ?? []) ws.send(JSON.stringify({ items: [item] }));
    },
    items: listOf,
    setMode(name: string, mode: HttpMode) {
      modes.set(name, mode);
      if (mode !== 'hang')
        for (const response of hanging) if (response.req.url?.includes(`/http/${name}`)) response.destroy();
    },
    hits: (name: string) => hits.get(name) ?? [],
    subscribeFrames: (name: string) => subscribeFrames.get(name) ?? [],
    connections: (name: string) => sockets.get(name)?.size ?? 0,
    /** Close the feed's WebSocket connections (abruptly with `terminate`). */
    drop(name: string, terminate = false) {
      for (const ws of sockets.get(name) ?? []) {
        if (terminate) ws.terminate();
        else ws.close(1011, 'feed restart');
      }
    },
    /** Stop reading the feed's connections (so pings go unanswered), keeping them open. */
    freeze(name: string) {
      for (const ws of sockets.get(name) ?? []) ws.pause();
    },
    async stop() {
      for (const response of hanging) response.destroy();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type Feeds = Awaited<ReturnType<typeof startFeeds>>;

/** Poll `check` until it returns a truthy value, or fail after `timeoutMs`. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
