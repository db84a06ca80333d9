import type { ServerFrame } from '@anode/shared';
import WebSocket from 'ws';

/**
 * A raw protocol-level WebSocket client for tests: every server frame is queued, and `next`
 * takes the oldest frame not taken yet that matches a predicate, waiting for it if need be
 * (with a timeout that fails the test loudly).
 */
export interface RawSocket {
  ws: WebSocket;
  frames: ServerFrame[];
  send(frame: unknown): void;
  sendRaw(data: string | Buffer, binary?: boolean): void;
  next<T extends ServerFrame = ServerFrame>(match?: (frame: ServerFrame) => boolean, timeoutMs?: number): Promise<T>;
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

export async function openSocket(url: string, options: WebSocket.ClientOptions = {}): Promise<RawSocket> {
  const ws = new WebSocket(url, options);
  const frames: ServerFrame[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    frames.push(JSON.parse(String(data)) as ServerFrame);
    for (const wake of waiters) wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const wake of waiters) wake();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () =>
        reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })),
      );
    });
  });
  const taken = new Set<number>();
  let firstFree = 0;
  return {
    ws,
    frames,
    send: (frame) => ws.send(JSON.stringify(frame)),
    sendRaw: (data, binary = false) => ws.send(data, { binary }),
    closed,
    close: () => ws.close(),
    next<T extends ServerFrame>(match: (frame: ServerFrame) => boolean = () => true, timeoutMs = 5_000) {
      return new Promise<T>((resolve, reject) => {
        const check = () => {
          for (let i = firstFree; i < frames.length; i++) {
            if (taken.has(i)) continue;
            const frame = frames[i] as ServerFrame;
            if (match(frame)) {
              taken.add(i);
              while (taken.has(firstFree)) firstFree++;
              waiters.delete(check);
              clearTimeout(timer);
              resolve(frame as T);
              return;
            }
          }
          if (ws.readyState === WebSocket.CLOSED) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error('socket closed while waiting for a frame'));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(frames.slice(-5))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}
