import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

/**
 * A made-up market for the sources example and `npm start`: the two upstreams that
 * examples/sources.json pulls. `GET /prices` answers the latest trades as
 * `{"data":[{"trade_id","time","symbol","price"}]}` (time in epoch seconds); a WebSocket on
 * `/stream` that sends `{"op":"subscribe","channels":["trades"]}` then gets
 * `{"trades":[{"id","ts","symbol","price","size"}]}` (ts in epoch ms) about twice a second.
 *   node relay-node/examples/demo-feed.ts [--http-port 9000] [--ws-port 9001]
 */
export interface DemoFeed {
  pricesUrl: string;
  streamUrl: string;
  stop(): Promise<void>;
}

const SYMBOLS = ['btc', 'eth', 'sol'];
const START_PRICES: Record<string, number> = { btc: 97_000, eth: 3_400, sol: 180 };
const WINDOW = 10;

async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

export async function startDemoFeed(
  options: { host?: string; httpPort?: number; wsPort?: number } = {},
): Promise<DemoFeed> {
  const host = options.host ?? '127.0.0.1';
  const prices = { ...START_PRICES };
  // Ids start from this run's start time: a relay keeps its data folder, and ids from 0 again were
  // the last run's (its store drops them as duplicates), so a second `npm start` showed no prices.
  let tradeId = Date.now();
  const trades: { trade_id: number; time: number; symbol: string; price: number }[] = [];
  // A random walk, so the dashboard and subscribers see numbers move.
  const tick = () => {
    const symbol = SYMBOLS[tradeId % SYMBOLS.length] ?? 'btc'; // in turn: every symbol within 3 s
    prices[symbol] = Math.max(1, Math.round((prices[symbol] ?? 1) * (1 + (Math.random() - 0.5) * 0.002)));
    tradeId += 1;
    const trade = { trade_id: tradeId, time: Math.floor(Date.now() / 1000), symbol, price: prices[symbol] ?? 1 };
    trades.push(trade);
    if (trades.length > WINDOW) trades.shift();
    return trade;
  };

  const http = createServer((request, response) => {
    if (request.url !== '/prices') return void response.writeHead(404).end();
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: trades }));
  });
  const httpPort = await listen(http, host, options.httpPort ?? 0);

  const wsHttp = createServer((_request, response) => void response.writeHead(426).end());
  const wss = new WebSocketServer({ server: wsHttp, path: '/stream' });
  wss.on('connection', (socket) => {
    let timer: ReturnType<typeof setInterval> | undefined;
    socket.on('message', (raw) => {
      let frame: { op?: string; channels?: string[] };
      try {
        frame = JSON.parse(String(raw)) as typeof frame;
      } catch {
        return; // not a subscribe frame
      }
      if (frame.op !== 'subscribe' || !frame.channels?.includes('trades') || timer) return;
      timer = setInterval(() => {
        const { trade_id, symbol, price } = tick();
        const size = Math.round(Math.random() * 1000) / 100;
        socket.send(JSON.stringify({ trades: [{ id: `t${trade_id}`, ts: Date.now(), symbol, price, size }] }));
      }, 500);
    });
    socket.on('close', () => clearInterval(timer));
  });
  const wsPort = await listen(wsHttp, host, options.wsPort ?? 0);
  const ticker = setInterval(tick, 1_000);
  tick();

  return {
    pricesUrl: `http://${host}:${httpPort}/prices`,
    streamUrl: `ws://${host}:${wsPort}/stream`,
    async stop() {
      clearInterval(ticker);
      for (const client of wss.clients) client.terminate();
      wss.close();
      http.closeAllConnections();
      await Promise.all([
        new Promise((resolve) => http.close(resolve)),
        new Promise((resolve) => wsHttp.close(resolve)),
      ]);
    },
  };
}

if (import.meta.main) {
  const { parseArgs } = await import('node:util');
  const { values } = parseArgs({ options: { 'http-port': { type: 'string' }, 'ws-port': { type: 'string' } } });
  const feed = await startDemoFeed({
    httpPort: Number(values['http-port'] ?? 9000),
    wsPort: Number(values['ws-port'] ?? 9001),
  });
  console.log(`demo feed: ${feed.pricesUrl} and ${feed.streamUrl} (Ctrl-C stops it)`);
  process.on('SIGINT', () => void feed.stop().then(() => process.exit(0)));
  process.on('SIGTERM', () => void feed.stop().then(() => process.exit(0)));
}
