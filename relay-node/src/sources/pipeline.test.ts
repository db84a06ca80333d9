import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { runSteps } from './pipeline.ts';
import { defineStep, type SourceMessage } from './plugin-api.ts';

const log = pino({ level: 'silent' });
const message: SourceMessage = { id: '1', topic: 't.a', source: 's', ts: 1, data: { price: 2 } };
const run = (steps: Parameters<typeof runSteps>[0]) => runSteps(steps, message, { defaultTimeoutMs: 50, log });

describe('middleware steps', () => {
  it('filters, maps and enriches in order', async () => {
    const result = await run([
      defineStep({ name: 'keep', kind: 'filter', run: () => true }),
      defineStep({ name: 'retopic', kind: 'map', run: (m) => ({ ...m, topic: 't.b' }) }),
      defineStep({ name: 'more', kind: 'enrich', run: async () => ({ extra: 1 }) }),
    ]);
    assert.deepEqual(result, { outcome: 'ok', message: { ...message, topic: 't.b', data: { price: 2, extra: 1 } } });
  });

  it('drops a message a filter refuses', async () => {
    assert.deepEqual(await run([defineStep({ name: 'no', kind: 'filter', run: () => false })]), {
      outcome: 'dropped',
    });
  });

  it('sends a throwing, timed-out or ill-shaped step’s message to dead letter with the reason', async () => {
    const thrown = await run([
      defineStep({
        name: 'boom',
        kind: 'map',
        run: () => {
          throw new Error('bad');
        },
      }),
    ]);
    assert.deepEqual(thrown, { outcome: 'dead', step: 'boom', reason: 'Error: bad' });
    let aborted = false;
    const slow = await run([
      defineStep({
        name: 'slow',
        kind: 'enrich',
        timeout_ms: 20,
        run: (_m, ctx) =>
          new Promise((resolve) =>
            ctx.signal.addEventListener('abort', () => {
              aborted = true;
              resolve({});
            }),
          ),
      }),
    ]);
    assert.equal(slow.outcome, 'dead');
    assert.match((slow as { reason: string }).reason, /StepTimeoutError: timed out after 20 ms/);
    assert.ok(aborted);
    const shape = await run([{ name: 'odd', kind: 'filter', run: () => 'yes' as unknown as boolean }]);
    assert.match((shape as { reason: string }).reason, /not a boolean/);
  });
});
