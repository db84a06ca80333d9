import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { startRelay, tempDir } from '../helpers/relay.ts';

/**
 * Run in a process of its own, which keeps going after an uncaught error as many servers do
 * (`uncaughtException` logged): the test runner would count the listeners' errors against the
 * test. Its listeners throw; it reports each line it reaches.
 */
const script = (clientUrl: string) => `
import { createClient } from ${JSON.stringify(clientUrl)};
process.on('uncaughtException', (error) => console.log('thrown: ' + error.message));
const client = createClient({ url: process.env.RELAY, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
client.on('close', () => { throw new Error('close listener'); });
client.subscribe('ls.t', () => { throw new Error('first handler'); });
let opens = 0;
client.on('open', () => console.log('open ' + ++opens));
client.subscribe('ls.>', (message) => {
  console.log('second handler: ' + message.data);
  if (opens === 2) void client.close();
}).ready.then(() => console.log('subscribed'));
`;

describe('client library: listeners that throw', () => {
  it('still reconnects and delivers to other subscriptions when a listener throws', async () => {
    const dataDir = await tempDir();
    let relay = await startRelay({}, { dataDir });
    const port = new URL(relay.url).port;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script(import.meta.resolve('@anode/client'))], {
      env: { ...process.env, RELAY: relay.wsUrl },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: string[] = [];
    let output = '';
    const waiters = new Set<() => void>();
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      lines.splice(0, lines.length, ...output.split('\n').filter(Boolean));
      for (const wake of waiters) wake();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const line = async (wanted: string) => {
      const deadline = Date.now() + 10_000;
      while (!lines.includes(wanted)) {
        if (Date.now() > deadline) throw new Error(`the client never printed "${wanted}": ${lines.join(' | ')}`);
        await new Promise<void>((resolve) => {
          waiters.add(resolve);
          setTimeout(resolve, 100);
        });
      }
    };
    const publish = async (data: string) => {
      const response = await fetch(`${relay.url}/v1/topics/ls.t/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data }),
      });
      assert.equal(response.status, 202);
    };
    try {
      await line('subscribed');
      await publish('one');
      await line('second handler: one');
      await relay.stop();
      relay = await startRelay({ port }, { dataDir });
      await line('open 2');
      await publish('two');
      await line('second handler: two');
      assert.equal(await exited, 0, 'close() leaves nothing that keeps the process alive');
      assert.ok(lines.includes('thrown: close listener'), 'a listener error is still reported as uncaught');
      assert.ok(lines.includes('thrown: first handler'));
    } finally {
      child.kill();
      await relay.stop();
    }
  });
});
