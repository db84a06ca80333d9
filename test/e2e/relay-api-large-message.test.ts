import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerFrame } from '@anode/shared';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket, type RawSocket } from '../helpers/ws.ts';

/**
 * A relay may take messages up to 16 MiB (max_message_bytes), larger than its send buffer
 * (max_send_buffer_bytes, 8 MiB by default). A subscriber that reads was cut off as too slow
 * (4001) by the one message that overfilled the buffer on its own, and every resume over that
 * message was cut off again: a message acked to its publisher that no subscriber could ever get.
 * The message here is larger than the kernel buffers of a loopback connection can take at once
 * (a few MiB each way), so it cannot leave the relay's send buffer as it is written.
 */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const SEND_BUFFER_BYTES = 1024 * 1024;
const DATA = 'x'.repeat(15 * 1024 * 1024);

type Outcome = { frame: ServerFrame } | { closed: { code: number; reason: string } };

/** The first frame matching `match`, or how the socket closed before it came. */
const nextOrClose = (sock: RawSocket, match: (frame: ServerFrame) => boolean): Promise<Outcome> =>
  Promise.race([sock.next(match, 60_000).then((frame) => ({ frame })), sock.closed.then((closed) => ({ closed }))]);

describe('relay API: a message larger than the send buffer', () => {
  let relay: TestRelay;
  let cursor: string;
  before(async () => {
    relay = await startRelay({
      'max-message-bytes': String(MAX_MESSAGE_BYTES),
      'max-send-buffer-bytes': String(SEND_BUFFER_BYTES),
    });
  });
  after(() => relay.stop());

  it('reaches a live subscriber that reads, which stays connected', async () => {
    const sub = await openSocket(`${relay.wsUrl}/v1/ws`);
    sub.send({ op: 'sub', topic: 'large.one', ref: 's' });
    await sub.next((f) => f.op === 'subscribed');
    const res = await fetch(`${relay.url}/v1/topics/large.one/messages`, {
      method: 'POST',
      body: JSON.stringify({ data: DATA }),
    });
    assert.equal(res.status, 202, await res.clone().text());
    cursor = ((await res.json()) as { messages: { cursor: string }[] }).messages[0]?.cursor ?? '';
    const got = await nextOrClose(sub, (f) => f.op === 'msg');
    assert.ok('frame' in got, `cut off instead: ${JSON.stringify(got)}`);
    assert.equal((got.frame as { data?: unknown }).data, DATA);
    sub.send({ op: 'ping', ref: 'alive' });
    assert.ok('frame' in (await nextOrClose(sub, (f) => f.op === 'pong')), 'the connection is still open');
    sub.close();
  });

  it('is replayed by a resume from before it, which then answers subscribed', async () => {
    const sub = await openSocket(`${relay.wsUrl}/v1/ws`);
    sub.send({ op: 'sub', topic: 'large.one', after: '0', ref: 'resume' });
    const got = await nextOrClose(sub, (f) => f.op === 'subscribed');
    assert.ok('frame' in got, `the resume was cut off: ${JSON.stringify(got)}`);
    assert.equal((got.frame as { cursor?: string }).cursor, cursor);
    const messages = sub.frames.filter((f) => f.op === 'msg') as { data?: unknown }[];
    assert.equal(messages.length, 1);
    assert.equal(messages[0]?.data, DATA);
    sub.close();
  });
});
