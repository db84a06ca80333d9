import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { createRelayNode, type RelayNode } from './node.ts';

/** Sends raw bytes to the relay and reads what it answers until it closes (or 5 s). */
function exchange(port: number, request: string): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      const split = text.indexOf('\r\n\r\n');
      const head = split < 0 ? text : text.slice(0, split);
      resolve({ status: Number(head.split(' ')[1]), headers: head, body: split < 0 ? '' : text.slice(split + 4) });
    });
    socket.end(request);
    const timer = setTimeout(() => socket.destroy(), 5_000);
  });
}

describe('relay node: requests refused or odd before the app sees them', () => {
  let dir: string;
  let node: RelayNode;
  let port: number;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'anode-node-http-'));
    const config = loadConfig({
      flags: { port: '0', host: '127.0.0.1', 'data-dir': dir, 'frame-timeout-ms': '300' },
      env: {},
    });
    node = await createRelayNode(config, createLogger('silent'));
    port = Number(new URL((await node.start()).url).port);
  });
  after(async () => {
    await node.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves an HTTP/1.0 request without a Host header (a load balancer health check)', async () => {
    const answer = await exchange(port, 'GET /healthz HTTP/1.0\r\n\r\n');
    assert.equal(answer.status, 200, answer.headers);
    assert.deepEqual(JSON.parse(answer.body), { ok: true });
  });

  it('refuses an HTTP/1.1 request without a Host header with 400 bad_frame and a JSON body', async () => {
    const answer = await exchange(port, 'GET /healthz HTTP/1.1\r\n\r\n');
    assert.equal(answer.status, 400);
    assert.equal(JSON.parse(answer.body).error.code, 'bad_frame');
  });

  it('refuses a Host header that is no host with 400 bad_frame and a JSON body', async () => {
    const answer = await exchange(port, 'GET /healthz HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n');
    assert.equal(answer.status, 400);
    assert.equal(JSON.parse(answer.body).error.code, 'bad_frame');
  });

  it('answers headers over the size limit (a large token) with 431 too_large naming the limit', async () => {
    const token = 'x'.repeat(100_000);
    const answer = await exchange(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    assert.equal(answer.status, 431);
    assert.match(answer.headers, /content-type: application\/json/i);
    const { error } = JSON.parse(answer.body);
    assert.equal(error.code, 'too_large');
    assert.match(error.message, /header size limit/);
  });

  it('answers a request that is not HTTP with 400 bad_frame and a JSON body', async () => {
    const answer = await exchange(port, 'GARBAGE\r\n\r\n');
    assert.equal(answer.status, 400);
    assert.equal(JSON.parse(answer.body).error.code, 'bad_frame');
  });

  it('still cuts off headers not finished within frame_timeout_ms, with 408 and a JSON body', async () => {
    const started = Date.now();
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let text = '';
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('close', () => resolve({ status: Number(text.split(' ')[1]), body: text.split('\r\n\r\n')[1] ?? '' }));
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // never finished
    });
    assert.ok(Date.now() - started < 5_000, `cut off after ${Date.now() - started} ms`);
    assert.equal(answer.status, 408);
    assert.equal(JSON.parse(answer.body).error.code, 'bad_frame');
  });

  it('does not carry out a request the client finishes after its 408 (a publish told 408 is not stored)', async () => {
    const topic = `late-${Date.now()}`;
    const body = '{"data":"after-408"}';
    const closed = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let text = '';
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        // The client finishes at once, as one that has not read the 408 yet.
        if (text.includes('\r\n\r\n') && !socket.writableEnded) socket.end(`\r\n${body}`);
      });
      socket.on('close', () => resolve(text));
      socket.write(
        `POST /v1/topics/${topic}/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n`,
      );
    });
    assert.match(closed, /^HTTP\/1\.1 408 /, closed);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const history = (await (await fetch(`http://127.0.0.1:${port}/v1/topics/${topic}/messages`)).json()) as {
      messages: unknown[];
    };
    assert.deepEqual(history.messages, [], `stored after its 408: ${JSON.stringify(history)}`);
  });
});
