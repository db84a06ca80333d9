import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { createLogger } from '../logger.ts';
import { parseDefinition } from './definition.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';
import { createScheduler } from './scheduler.ts';
import { createSourceRuntime } from './source-runtime.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('source runtime: timeout_ms', () => {
  const closing: (() => void)[] = [];
  after(() => {
    for (const close of closing) close();
  });

  /** An http source on a loopback upstream answering with `answer`, polled every 20 ms with timeout_ms 100. */
  const source = async (answer: RequestListener, ingest: () => Promise<void>) => {
    const upstream = createServer(answer);
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const { port } = upstream.address() as AddressInfo;
    const definition = parseDefinition(
      {
        name: 's',
        kind: 'http',
        url: `http://127.0.0.1:${port}/`,
        topic: 't.s',
        interval_ms: 20,
        timeout_ms: 100,
        backoff_max_ms: 50,
      },
      BUILTIN_KINDS,
    );
    const scheduler = createScheduler({ concurrency: 4 });
    const runtime = createSourceRuntime(definition, BUILTIN_KINDS.get('http')!, {
      scheduler,
      log: createLogger('silent'),
      ingest,
      onError() {},
    });
    closing.push(() => {
      runtime.stop();
      scheduler.stop();
      upstream.closeAllConnections();
      upstream.close();
    });
    return runtime;
  };

  it('does not time the publish: a slow store neither fails the poll nor overlaps the next one', async () => {
    let ingests = 0;
    let publishing = 0;
    let peak = 0;
    // Each publish takes 2.5 timeouts.
    const runtime = await source(
      (_request, response) => response.setHeader('content-type', 'application/json').end('[{"id":1}]'),
      async () => {
        ingests += 1;
        peak = Math.max(peak, ++publishing);
        await sleep(250);
        publishing -= 1;
      },
    );
    runtime.start();
    await sleep(800);
    // Before, the attempt failed at 100 ms and the next poll published alongside it.
    assert.equal(peak, 1);
    assert.equal(runtime.health.lastError?.message, undefined);
    assert.equal(runtime.health.failures, 0);
    assert.ok(ingests >= 2, `${ingests} publishes`);
  });

  it('still fails a poll whose upstream does not answer within timeout_ms, and publishes nothing of it', async () => {
    let ingests = 0;
    const runtime = await source(
      () => {}, // never answers
      async () => void (ingests += 1),
    );
    runtime.start();
    await sleep(300);
    assert.equal(runtime.state, 'failing');
    assert.equal(runtime.health.lastError?.message, 'no answer within 100 ms');
    assert.equal(ingests, 0);
  });
});
