import type { RelayProcess } from './relay.ts';

/** Environment that makes a spawned relay open the inspector on a free loopback port. */
export const INSPECTABLE = { NODE_OPTIONS: '--inspect=127.0.0.1:0' };

export interface MemoryUsage {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/**
 * A spawned relay's `process.memoryUsage()` right after a full garbage collection, through the
 * inspector (the relay must have been spawned with INSPECTABLE): what it retains, not what it has
 * not collected yet.
 */
export async function memoryAfterGc(relay: RelayProcess): Promise<MemoryUsage> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(relay.output.join(''))?.[1];
  if (!url) throw new Error('the relay has no inspector (spawn it with INSPECTABLE)');
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`cannot reach the inspector at ${url}`));
  });
  type Reply = { id?: number; result?: { result?: { value?: string } } };
  const pending = new Map<number, (reply: Reply) => void>();
  socket.onmessage = (event) => {
    const reply = JSON.parse(String(event.data)) as Reply;
    if (reply.id !== undefined) pending.get(reply.id)?.(reply);
  };
  let next = 0;
  const call = (method: string, params: object = {}) =>
    new Promise<Reply>((resolve) => {
      const id = ++next;
      pending.set(id, resolve);
      socket.send(JSON.stringify({ id, method, params }));
    });
  try {
    await call('HeapProfiler.collectGarbage');
    const reply = await call('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    });
    return JSON.parse(reply.result?.result?.value ?? 'null') as MemoryUsage;
  } finally {
    socket.close();
  }
}
