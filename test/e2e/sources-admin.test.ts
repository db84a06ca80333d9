import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { type Feeds, startFeeds, waitFor } from '../helpers/feeds.ts';
import { startRelay, type TestRelay, tempDir } from '../helpers/relay.ts';

const TOKEN = 'admin-token-for-tests-0123456789';

describe('sources: admin API', () => {
  let feeds: Feeds;
  let relay: TestRelay;
  let dataDir: string;
  const api = (path: string, init: RequestInit & { token?: string | null } = {}) =>
    fetch(`${relay.url}/v1/admin/sources${path}`, {
      ...init,
      headers: {
        'content-type': 'application/json',
        ...(init.token === null ? {} : { authorization: `Bearer ${init.token ?? TOKEN}` }),
      },
    });
  const json = async (res: Response) => (await res.json()) as Record<string, unknown> & { status: { state: string } };

  before(async () => {
    feeds = await startFeeds();
    dataDir = await tempDir();
    relay = await startRelay({ 'admin-token': TOKEN }, { dataDir });
  });

  after(async () => {
    await relay?.stop();
    await feeds?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses requests without the token, or with a wrong one', async () => {
    assert.equal((await api('', { token: null })).status, 401);
    assert.equal((await api('', { token: 'wrong' })).status, 401);
    const res = await api('', { method: 'POST', token: null, body: '{}' });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'unauthorized');
    // Read as /v1/status and the token routes read it: any white space after "Bearer".
    const spaced = await fetch(`${relay.url}/v1/admin/sources`, { headers: { authorization: `Bearer \t ${TOKEN}` } });
    assert.equal(spaced.status, 200);
    const history = (authorization: string) => fetch(`${relay.url}/v1/status/history`, { headers: { authorization } });
    assert.equal((await history('Bearer wrong')).status, 401, 'the dashboard guard is on here');
    assert.equal((await history(`Bearer  ${TOKEN}`)).status, 200);
  });

  it('creates a polled source from the minimal body; each poll body becomes one message', async () => {
    feeds.push('x', { id: 'a', ts: 1 });
    const body = { name: 's1', kind: 'http', url: feeds.httpUrl('x'), interval_ms: 100, topic: 't.x' };
    const res = await api('', { method: 'POST', body: JSON.stringify(body) });
    assert.equal(res.status, 201);
    assert.equal((await json(res)).name, 's1');
    assert.equal((await api('', { method: 'POST', body: JSON.stringify(body) })).status, 409);
    assert.equal(
      (await api('', { method: 'POST', body: JSON.stringify({ ...body, name: 'bad', kind: 'ftp' }) })).status,
      400,
    );
    await waitFor(async () => {
      const latest = (await (await fetch(`${relay.url}/v1/topics/t.x/latest`)).json()) as {
        sources: Record<string, { data: { items: unknown[] } }>;
      };
      return latest.sources.s1?.data.items.length === 1;
    });
    const list = (await (await api('')).json()) as { sources: { name: string }[] };
    assert.deepEqual(
      list.sources.map((s) => s.name),
      ['s1'],
    );
  });

  it('pauses (no more polls), resumes, updates and deletes', async () => {
    const paused = await json(await api('/s1/pause', { method: 'POST' }));
    assert.equal(paused.status.state, 'paused');
    const hits = feeds.hits('x').length;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(feeds.hits('x').length, hits, 'a paused source was polled');
    const resumed = await json(await api('/s1/resume', { method: 'POST' }));
    assert.notEqual(resumed.status.state, 'paused');
    await waitFor(() => feeds.hits('x').length > hits, 3_000, 'polls after resume');
    const patched = await json(await api('/s1', { method: 'PATCH', body: JSON.stringify({ interval_ms: 150 }) }));
    assert.equal(patched.interval_ms, 150);
    assert.equal(patched.url, feeds.httpUrl('x'));
    const created = await api('', {
      method: 'POST',
      body: JSON.stringify({ name: 's2', kind: 'http', url: feeds.httpUrl('y'), interval_ms: 100, topic: 't.y' }),
    });
    assert.equal(created.status, 201);
    assert.equal((await api('/s2/pause', { method: 'POST' })).status, 200);
    const deleted = await api('/s1', { method: 'DELETE' });
    assert.equal(deleted.status, 200);
    assert.equal((await api('/s1')).status, 404);
    const after = feeds.hits('x').length;
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(feeds.hits('x').length <= after + 1, 'a deleted source kept polling');
  });

  it('keeps the changes across a restart', async () => {
    await relay.stop();
    relay = await startRelay({ 'admin-token': TOKEN }, { dataDir });
    const list = (await (await api('')).json()) as { sources: { name: string; paused: boolean }[] };
    assert.deepEqual(
      list.sources.map((s) => [s.name, s.paused]),
      [['s2', true]],
    );
    const resumed = await json(await api('/s2/resume', { method: 'POST' }));
    assert.notEqual(resumed.status.state, 'paused');
    await waitFor(() => feeds.hits('y').length > 0, 3_000, 's2 polling after restart');
  });

  it('refuses a number given as a string, and a body naming another source than the URL (400 bad_frame)', async () => {
    const body = { name: 'n1', kind: 'http', url: feeds.httpUrl('n'), interval_ms: 60_000, topic: 't.n' };
    const refused = async (res: Response, field: string) => {
      assert.equal(res.status, 400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, 'bad_frame');
      assert.match(error.message, new RegExp(`^source n1: ${field}: `));
      return error.message;
    };
    // Before: 201, and the string stored and echoed back ("interval_ms":"1000").
    for (const field of [
      'interval_ms',
      'timeout_ms',
      'backoff_min_ms',
      'backoff_max_ms',
      'dedup_window',
      'max_bytes',
    ]) {
      const message = await refused(
        await api('', { method: 'POST', body: JSON.stringify({ ...body, [field]: '1000' }) }),
        field,
      );
      assert.match(message, /must be a number, not the string "1000"/);
    }
    assert.equal((await api('/n1')).status, 404);
    assert.equal((await api('', { method: 'POST', body: JSON.stringify(body) })).status, 201);
    await refused(await api('/n1', { method: 'PATCH', body: JSON.stringify({ interval_ms: '500' }) }), 'interval_ms');
    await refused(
      await api('/n1', { method: 'PUT', body: JSON.stringify({ ...body, timeout_ms: '500' }) }),
      'timeout_ms',
    );

    // Before: 200, and the name in the body ignored (a rename that looked done).
    for (const method of ['PATCH', 'PUT']) {
      const res = await api('/n1', { method, body: JSON.stringify({ ...body, name: 'n2', interval_ms: 30_000 }) });
      assert.equal(res.status, 400, method);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, 'bad_frame');
      assert.match(error.message, /name: the body says "n2" but the URL "n1": a source cannot be renamed/);
    }
    // The same name in the body is fine.
    assert.equal(
      (await api('/n1', { method: 'PATCH', body: JSON.stringify({ name: 'n1', interval_ms: 50_000 }) })).status,
      200,
    );
    const kept = await json(await api('/n1'));
    assert.equal(kept.interval_ms, 50_000);
    assert.equal((await api('/n2')).status, 404);
    assert.equal((await api('/n1', { method: 'DELETE' })).status, 200);
  });

  it('refuses everything when no admin token is configured', async () => {
    const open = await startRelay();
    try {
      const res = await fetch(`${open.url}/v1/admin/sources`, { headers: { authorization: 'Bearer anything' } });
      assert.equal(res.status, 403);
    } finally {
      await open.stop();
    }
  });
});
