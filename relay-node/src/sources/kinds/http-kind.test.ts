import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../logger.ts';
import { parseDefinition } from '../definition.ts';
import { BUILTIN_KINDS } from './builtin-kinds.ts';
import { httpKind } from './http-kind.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

/** A real HTTP server on loopback: `answer` decides each response; every request is recorded. */
async function upstream(answer: (req: IncomingMessage) => { status: number; headers?: Record<string, string> }) {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const { status, headers } = answer(req);
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(status === 200 ? JSON.stringify({ data: [{ id: 1, at: req.url }] }) : '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { seen, url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** One poll of an http source; resolves with the payloads it emitted. */
async function poll(raw: Record<string, unknown>) {
  const definition = parseDefinition({ name: 'h', kind: 'http', topic: 't.h', ...raw }, BUILTIN_KINDS);
  const emitted: unknown[] = [];
  const driver = httpKind.create(definition, {
    log: createLogger('silent'),
    emit: async (payload) => void emitted.push(payload),
    fault() {},
    down() {},
    lost() {},
  });
  await driver.run(AbortSignal.timeout(10_000));
  return emitted;
}

describe('http source: redirects', () => {
  const servers: { close(): Promise<void> }[] = [];
  after(() => Promise.all(servers.map((s) => s.close())));

  it('does not follow a redirect to another origin, and sends it nothing', async () => {
    const elsewhere = await upstream(() => ({ status: 200 }));
    const origin = await upstream(() => ({ status: 302, headers: { location: `${elsewhere.url}/collect` } }));
    servers.push(elsewhere, origin);
    await assert.rejects(poll({ url: `${origin.url}/prices`, headers: { 'x-api-key': 'SECRET' } }), (error: Error) =>
      /redirects to another origin \(http:\/\/127\.0\.0\.1:\d+\), not followed/.test(error.message),
    );
    assert.equal(origin.seen.length, 1);
    assert.equal(elsewhere.seen.length, 0);
  });

  it('follows redirects within its origin, keeping its headers; a POST after a 303 becomes a GET', async () => {
    const origin = await upstream((req) =>
      req.url === '/old' ? { status: 303, headers: { location: '/new' } } : { status: 200 },
    );
    servers.push(origin);
    const emitted = await poll({
      url: `${origin.url}/old`,
      method: 'POST',
      body: { q: 1 },
      headers: { 'x-api-key': 'K' },
    });
    assert.deepEqual(emitted, [{ data: [{ id: 1, at: '/new' }] }]);
    assert.deepEqual(
      origin.seen.map((s) => [s.method, s.url, s.headers['x-api-key'], s.headers['content-type']]),
      [
        ['POST', '/old', 'K', 'application/json'],
        ['GET', '/new', 'K', undefined],
      ],
    );
  });

  it('follows 5 redirects and gives up at the 6th', async () => {
    const chain = (limit: number) =>
      upstream((req) =>
        (req.url ?? '').length <= limit ? { status: 307, headers: { location: `${req.url}x` } } : { status: 200 },
      );
    const five = await chain(6); // /a, /ax, … /axxxx (paths up to 6 characters) redirect, /axxxxx answers
    const six = await chain(7);
    servers.push(five, six);
    assert.equal((await poll({ url: `${five.url}/a` })).length, 1);
    assert.equal(five.seen.length, 6);
    await assert.rejects(poll({ url: `${six.url}/a` }), /more than 5 redirects/);
    assert.equal(six.seen.length, 6);
  });
});

describe('http source: the bytes of an answer', () => {
  const servers: { close(): Promise<void> }[] = [];
  after(() => Promise.all(servers.map((s) => s.close())));

  /** A server answering every request with `body`, as `content-type`. */
  async function answering(body: Buffer, contentType: string) {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': contentType });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const close = () => new Promise<void>((r) => server.close(() => r()));
    servers.push({ close });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  }

  it('reads an answer that is not UTF-8 in the charset its Content-Type names', async () => {
    const url = await answering(Buffer.from('{"name":"café"}', 'latin1'), 'application/json; charset=ISO-8859-1');
    // Before, the bytes were read as UTF-8 and the é published as U+FFFD.
    assert.deepEqual(await poll({ url }), [{ name: 'café' }]);
  });

  it('reads UTF-8 as UTF-8 whatever charset is named, and drops a leading byte order mark', async () => {
    const url = await answering(
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"name":"café"}')]),
      'application/json; charset=iso-8859-1',
    );
    // Before, the byte order mark made the answer invalid JSON: the poll failed every time.
    assert.deepEqual(await poll({ url }), [{ name: 'café' }]);
  });

  it('reads an answer in the UTF-16 its Content-Type names, all ASCII or not', async () => {
    // A review: all-ASCII UTF-16 is valid UTF-8 too (NUL bytes between the letters), so it was
    // read as UTF-8 and failed as invalid JSON, until one character was not ASCII.
    for (const [text, charset] of [
      ['{"name":"cafe"}', 'utf-16le'],
      ['{"name":"café"}', 'utf-16le'],
      ['{"name":"cafe"}', 'UTF-16BE'],
    ] as const) {
      const le = Buffer.from(text, 'utf16le');
      const body = charset === 'UTF-16BE' ? Buffer.from(le).swap16() : le;
      const url = await answering(body, `application/json; charset=${charset}`);
      assert.deepEqual(await poll({ url }), [JSON.parse(text)], charset);
    }
  });

  it('fails a poll whose answer is not valid UTF-8 and names no other charset, instead of repairing it', async () => {
    const url = await answering(Buffer.from('{"name":"café"}', 'latin1'), 'application/json');
    await assert.rejects(poll({ url }), (error: Error & { sample?: string }) => {
      assert.match(error.message, /not valid UTF-8/);
      assert.match(error.sample ?? '', /caf/);
      return true;
    });
  });
});

describe('http source: answers with no content', () => {
  const servers: { close(): Promise<void> }[] = [];
  after(() => Promise.all(servers.map((s) => s.close())));

  it('takes a 204 or 205 as a poll with nothing new, as a 304', async () => {
    for (const status of [204, 205]) {
      const origin = await upstream(() => ({ status }));
      servers.push(origin);
      // Before, its empty body was `invalid JSON`: the source failed every poll and backed off
      // (up to backoff_max_ms between polls) while upstream merely had nothing new.
      assert.deepEqual(await poll({ url: `${origin.url}/since` }), []);
    }
  });
});

describe('http source: an upstream it cannot reach', () => {
  it('says why (the cause fetch keeps apart: connect ECONNREFUSED), naming the URL without its secrets', async () => {
    // A port just closed on loopback: nothing listens there, so the connection is refused.
    const closed = await upstream(() => ({ status: 200 }));
    await closed.close();
    const port = new URL(closed.url).port;
    const failure = (url: string) =>
      poll({ url }).then(
        () => assert.fail('the poll should fail'),
        (error: Error) => error.message,
      );
    // Before, only "fetch failed": no word of what failed or where.
    const message = await failure(`${closed.url}/feed?token=s3cret-token&page=2`);
    assert.equal(
      message,
      `request to http://127.0.0.1:${port}/feed?token=***&page=2 failed: connect ECONNREFUSED 127.0.0.1:${port}`,
    );
    assert.ok(!message.includes('s3cret'), message);
    // A secret last in the query is masked alone, not with the words after it.
    assert.equal(
      await failure(`${closed.url}/feed?page=2&token=s3cret-token`),
      `request to http://127.0.0.1:${port}/feed?page=2&token=*** failed: connect ECONNREFUSED 127.0.0.1:${port}`,
    );
  });
});

describe('http source: credentials in its url', () => {
  it('sends them as Basic authorization (fetch refuses a URL that holds them), and not in the URL', async () => {
    const feed = await upstream(() => ({ status: 200 }));
    try {
      const url = feed.url.replace('http://', 'http://reader:p%40ss%3Aw0rd@');
      assert.equal((await poll({ url: `${url}/feed` })).length, 1, 'the poll reads the feed');
      const [request] = feed.seen;
      assert.equal(request?.headers.authorization, `Basic ${Buffer.from('reader:p@ss:w0rd').toString('base64')}`);
      assert.equal(request?.url, '/feed');
      // An authorization header the source sets itself wins.
      await poll({ url: `${url}/feed`, headers: { Authorization: 'Bearer t0k' } });
      assert.equal(feed.seen[1]?.headers.authorization, 'Bearer t0k');
    } finally {
      await feed.close();
    }
  });
});

describe('http source: an answer cut mid-way', () => {
  it('says the connection closed before the answer was complete, naming the URL (not only `terminated`)', async () => {
    const server = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' }); // chunked: no length
      response.write('{"data":[{"id":1},');
      setTimeout(() => response.destroy(), 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/feed?api_key=s3cret`;
    try {
      await assert.rejects(poll({ url }), (error: Error) => {
        assert.match(
          error.message,
          /^answer from http:\/\/127\.0\.0\.1:\d+\/feed\?api_key=\*\*\* cut: the connection closed before the answer was complete/,
        );
        return true;
      });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('http source: a kept-alive connection reset before the answer', () => {
  it('retries a GET once on a new connection, so a reuse race is not a failed poll', async () => {
    let requests = 0;
    const sockets = new Set<unknown>();
    const server = createServer((request, response) => {
      requests += 1;
      sockets.add(request.socket);
      // The second request arrives on the connection the first one left open: reset it unanswered,
      // as an upstream does that closes an idle connection just as it is reused.
      if (requests === 2) return void request.socket.resetAndDestroy();
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ n: requests }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const definition = parseDefinition(
      { name: 'h', kind: 'http', topic: 't.h', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` },
      BUILTIN_KINDS,
    );
    const emitted: unknown[] = [];
    const driver = httpKind.create(definition, {
      log: createLogger('silent'),
      emit: async (payload) => void emitted.push(payload),
      fault() {},
      down() {},
      lost() {},
    });
    try {
      await driver.run(AbortSignal.timeout(10_000));
      await driver.run(AbortSignal.timeout(10_000)); // before: failed, `read ECONNRESET`
      assert.deepEqual(emitted, [{ n: 1 }, { n: 3 }]);
      assert.equal(sockets.size, 2, 'the second request reused the first connection; the retry opened another');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
