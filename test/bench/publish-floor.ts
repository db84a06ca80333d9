// The publish baseline: the floor for a durable ack in Node. A minimal WebSocket and HTTP server
// that parses each `pub` frame (or HTTP body), group-commits what arrived in one tick to SQLite in
// one transaction (the embedded store's table and its file settings, sqlitePragmas) and answers
// `ack` once committed. No auth, limits, latest or fan-out. Ids are minted as the relay mints
// them (messageId).
//
//   node test/bench/publish-floor.ts <data-dir> <fsync: true|false>   (prints its URL when ready)
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { DatabaseSync } from 'node:sqlite';
import { messageId } from '@anode/shared';
import { sqlitePragmas } from '@anode/relay-node/src/storage/embedded/sqlite-schema.ts';
import { WebSocketServer } from 'ws';

const [dataDir = '.', fsyncFlag = 'false'] = process.argv.slice(2);
mkdirSync(dataDir, { recursive: true });
const db = new DatabaseSync(join(dataDir, 'floor.sqlite'));
db.exec(sqlitePragmas(fsyncFlag === 'true'));
db.exec(`CREATE TABLE messages (id TEXT PRIMARY KEY, topic TEXT NOT NULL, cursor TEXT NOT NULL,
  source TEXT NOT NULL, ts INTEGER NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
  CREATE UNIQUE INDEX messages_by_topic_cursor ON messages (topic, cursor);`);
const insert = db.prepare('INSERT INTO messages (id, topic, cursor, source, ts, data) VALUES (?, ?, ?, ?, ?, ?)');

interface Pending {
  id: string;
  cursor: string;
  topic: string;
  data: string;
  done: () => void;
}
let pending: Pending[] = [];
let seq = 0;
const corked = new Set<Duplex>();

const flush = () => {
  const batch = pending;
  pending = [];
  const ts = Date.now();
  db.exec('BEGIN');
  for (const p of batch) insert.run(p.id, p.topic, p.cursor, 'floor', ts, p.data);
  db.exec('COMMIT');
  for (const p of batch) p.done();
  for (const socket of corked) socket.uncork();
  corked.clear();
};

const accept = (topic: string, data: unknown, done: (id: string, cursor: string) => void) => {
  // The relay's id scheme (time first, then random): with random ids every row of a commit
  // lands on a page of its own, and the floor would be a floor for that schema only.
  const id = messageId();
  const cursor = (++seq).toString(16).padStart(16, '0');
  if (pending.length === 0) setImmediate(flush);
  pending.push({ id, cursor, topic, data: JSON.stringify(data), done: () => done(id, cursor) });
};

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const server = createServer((request, response) => {
  const topic = /^\/v1\/topics\/([^/]+)\/messages$/.exec(request.url ?? '')?.[1];
  if (request.method !== 'POST' || !topic) return void response.writeHead(404).end();
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    let items: { data?: unknown }[];
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
      items = (Array.isArray(body) ? body : [body]) as { data?: unknown }[];
    } catch {
      return void response.writeHead(400).end();
    }
    const acks: { id: string; cursor: string }[] = [];
    for (const item of items) {
      accept(topic, item.data, (id, cursor) => {
        acks.push({ id, cursor });
        if (acks.length === items.length) {
          response.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ messages: acks }));
        }
      });
    }
  });
});
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => {
    ws.on('message', (raw) => {
      const frame = JSON.parse(String(raw)) as { op?: string; topic?: string; data?: unknown; ref?: string };
      if (frame.op !== 'pub' || typeof frame.topic !== 'string') return;
      const ref = frame.ref;
      accept(frame.topic, frame.data, (id, cursor) => {
        // Acks of one commit leave in one write per socket, as the relay's do.
        if (!corked.has(socket)) {
          socket.cork();
          corked.add(socket);
        }
        ws.send(JSON.stringify({ op: 'ack', id, cursor, ref }));
      });
    });
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`baseline ready at http://127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => {
  db.close();
  process.exit(0);
});
