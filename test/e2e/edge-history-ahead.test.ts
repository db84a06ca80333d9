import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHybridClock } from '@anode/shared';
import { type EdgeRuntime, startEdge } from '../helpers/edge.ts';

/**
 * A poller paging over HTTP from a cursor another node minted ahead of this edge's clock (a client
 * failing over from a relay whose clock is ahead): it pages on from that cursor while `next` is
 * null, and a message the edge accepted meanwhile was stamped below it and never shown.
 */
describe('edge HTTP history from a cursor ahead of the topic object’s clock', () => {
  let edge: EdgeRuntime;
  before(async () => {
    edge = await startEdge();
  });
  after(() => edge?.stop());

  it('shows a message published after it on the poller’s next page', async () => {
    const ahead = createHybridClock('relayahead0', () => Date.now() + 3_000).next();
    const page = async () =>
      (await (await fetch(`${edge.url}/v1/topics/ahead.t/messages?after=${ahead}`)).json()) as {
        messages: { id: string }[];
      };
    assert.deepEqual((await page()).messages, []);
    const posted = await fetch(`${edge.url}/v1/topics/ahead.t/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ data: 1 }),
    });
    assert.equal(posted.status, 202);
    const [ack] = ((await posted.json()) as { messages: { id: string; cursor: string }[] }).messages;
    assert.deepEqual(
      (await page()).messages.map((m) => m.id),
      [ack?.id],
    );
  });
});
