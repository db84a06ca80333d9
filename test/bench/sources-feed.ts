// The sources benchmark's upstream: one HTTP server process serving `count` JSON feeds at
// /f/<i>. Feed i produces item k at epoch0 + phase(i) + k × period (phases spread evenly over the
// period), and answers its last `window` items as {"items":[{id, t, s, v}]}: `t` is when the item
// was produced (epoch ms, fractional), `s` when this answer was served. Items are computed from
// the clock on each request (no timers), ETag is the newest item's number (304 when unchanged).
// Prints one JSON line {url, epoch0, period, window, count} when listening.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { phaseOf } from './sources-items.ts';

const [countText = '100', periodText = '1000', windowText = '3'] = process.argv.slice(2);
const count = Number(countText);
const period = Number(periodText);
const window = Number(windowText);
const now = () => performance.timeOrigin + performance.now();
const epoch0 = Math.floor(now());

const server = createServer((request, response) => {
  const match = /^\/f\/(\d+)$/.exec(request.url ?? '');
  const i = match ? Number(match[1]) : -1;
  if (!(i >= 0 && i < count)) {
    response.writeHead(404).end();
    return;
  }
  const served = now();
  const base = epoch0 + phaseOf(i, period);
  const newest = Math.floor((served - base) / period);
  const etag = `"${newest}"`;
  if (request.headers['if-none-match'] === etag) {
    response.writeHead(304, { etag }).end();
    return;
  }
  const items = [];
  for (let k = Math.max(0, newest - window + 1); k <= newest; k++) {
    items.push({ id: `${i}-${k}`, t: base + k * period, s: served, v: k });
  }
  response.writeHead(200, { 'content-type': 'application/json', etag });
  response.end(JSON.stringify({ items }));
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}`, epoch0, period, window, count })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
