import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from './sqlite-schema.ts';
import type { WriterRequest, WriterReply } from './sqlite-writer.ts';
import { createWrites } from './sqlite-writes.ts';

/**
 * The embedded store's writer thread: owns the one writing connection and runs each request as
 * one transaction, in arrival order, replying once it is committed (and synced, with fsync on).
 */
const { path, fsync, maxPages } = workerData as { path: string; fsync: boolean; maxPages?: number };
const db = openDatabase(path, fsync, maxPages);
const writes = createWrites(db);
const port = parentPort;
if (!port) throw new Error('sqlite-writer-thread runs as a worker thread');

port.on('message', (request: WriterRequest) => {
  let reply: WriterReply;
  try {
    if (request.op === 'close') {
      db.close();
      reply = { seq: request.seq, ok: true, result: null };
    } else if (request.op === 'checkpoint') {
      db.exec('PRAGMA wal_checkpoint(PASSIVE)');
      reply = { seq: request.seq, ok: true, result: null };
    } else if (request.op === 'append') {
      reply = { seq: request.seq, ok: true, result: writes.append(request.rows) };
    } else {
      reply = {
        seq: request.seq,
        ok: true,
        result: writes.sweep(request.nowMs, request.retention, request.budget, request.fromTopic),
      };
    }
  } catch (error) {
    reply = { seq: request.seq, ok: false, message: (error as Error).message };
  }
  port.postMessage(reply);
  if (request.op === 'close') port.close();
});
