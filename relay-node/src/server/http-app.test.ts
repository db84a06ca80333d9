import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TokenVerifier } from '@anode/shared';
import { loadConfig } from '../config.ts';
import type { Hub } from '../hub/hub.ts';
import { createLogger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { createHttpApp } from './http-app.ts';

function app() {
  const metrics = createMetrics();
  const http = createHttpApp({
    hub: {} as Hub,
    config: loadConfig({ flags: {}, env: {} }),
    metrics,
    log: createLogger('silent'),
    verify: (async () => ({ pub: ['>'], sub: ['>'] })) as unknown as TokenVerifier,
    status: async () => ({}),
    healthy: async () => true,
  });
  return { http, metrics };
}

describe('relay HTTP: unknown routes', () => {
  test('a 404 is counted in anode_errors_total under bad_frame, never under its path', async () => {
    const { http, metrics } = app();
    for (const path of ['/nope', '/v1/nope/a', '/v1/topics', `/${'x'.repeat(300)}`]) {
      const response = await http.request(path, { method: path === '/nope' ? 'POST' : 'GET' });
      assert.equal(response.status, 404, path);
      assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'bad_frame');
    }
    const text = await metrics.registry.metrics();
    const series = text.split('\n').filter((line) => line.startsWith('anode_errors_total'));
    assert.deepEqual(series, ['anode_errors_total{code="bad_frame"} 4']);
  });
});
