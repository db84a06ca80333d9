import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Envelope, HISTORY_PAGE_BYTES, utf8Length } from '@anode/shared';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * History of large messages end to end on a relay with the embedded store: a client's page is
 * cut by bytes as well as by `limit`, and paging on with `next` (HTTP) or resuming (WebSocket)
 * still gets every message once, in order. Before the byte bound, `limit=1000` loaded the whole
 * topic at once (1,000 messages of 1 MiB: over 1 GB, then a 500).
 */
const COUNT = 40;
const PAD = 'x'.repeat(300 * 1024);

describe('history of large messages', () => {
  let relay: TestRelay;
  const ids: string[] = [];
  let start: string;

  before(async () => {
    // The default send buffer (8 MiB) is smaller than the 12 MiB of history: a resume goes at the
    // reader's pace instead of cutting it off as a slow consumer.
    relay = await startRelay();
    const post = async (data: unknown) => {
      const res = await fetch(`${relay.url}/v1/topics/large.t/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data }),
      });
      assert.equal(res.status, 202);
      return ((await res.json()) as { messages: { id: string; cursor: string }[] }).messages[0] as {
        id: string;
        cursor: string;
      };
    };
    start = (await post('start')).cursor;
    for (let n = 0; n < COUNT; n++) ids.push((await post({ n, pad: PAD })).id);
  });
  after(() => relay.stop());

  it('pages HTTP history with limit=1000 by bytes; `next` leads through every message once, in order', async () => {
    const read: Envelope[] = [];
    const sizes: number[] = [];
    let after: string | null = start;
    let pages = 0;
    while (after !== null) {
      const res: Response = await fetch(`${relay.url}/v1/topics/large.t/messages?limit=1000&after=${after}`);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { messages: Envelope[]; next: string | null };
      const bytes = body.messages.reduce((sum, m) => sum + utf8Length(JSON.stringify(m.data)), 0);
      assert.ok(bytes <= HISTORY_PAGE_BYTES, `page ${pages}: ${bytes} bytes of data`);
      sizes.push(body.messages.length);
      read.push(...body.messages);
      after = body.next;
      pages += 1;
      assert.ok(pages <= COUNT, 'pages end');
    }
    assert.ok(sizes.length >= 3 && sizes.every((n) => n < 1000), `page sizes ${sizes.join(', ')}`);
    assert.deepEqual(
      read.map((m) => m.id),
      ids,
    );
    assert.deepEqual(
      read.map((m) => (m.data as { n: number }).n),
      ids.map((_, n) => n),
    );
  });

  it('resumes a subscription over them: every message once, in order, then `subscribed`', async () => {
    const sock = await openSocket(`${relay.wsUrl}/v1/ws`);
    try {
      sock.send({ op: 'sub', topic: 'large.*', after: start, ref: 'r' });
      const subscribed = await sock.next((f) => f.op === 'subscribed', 60_000);
      const got = sock.frames.slice(0, sock.frames.indexOf(subscribed)).filter((f) => f.op === 'msg');
      assert.deepEqual(
        got.map((f) => (f as Envelope).id),
        ids,
      );
    } finally {
      sock.close();
    }
  });
});
