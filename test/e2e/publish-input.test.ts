import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Envelope, ServerFrame } from '@anode/shared';
import { startRelay, type TestRelay } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';

/**
 * What a real relay answers to publishes whose input is off, over HTTP and WebSocket: refused
 * with a message naming the problem, and nothing stored in its place.
 */

type ErrorBody = { error: { code: string; message: string } };

// Raw JSON text: `\ud800` in a JSON string is a lone surrogate once parsed (JSON.stringify of
// such a string would write the same escape, but the text here is what a client sends).
const post = async (relay: TestRelay, topic: string, text: string, headers: Record<string, string> = {}) => {
  const res = await fetch(`${relay.url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: text,
  });
  return { status: res.status, body: (await res.json()) as unknown };
};

const stored = async (relay: TestRelay, topic: string) =>
  ((await (await fetch(`${relay.url}/v1/topics/${topic}/messages`)).json()) as { messages: Envelope[] }).messages;

describe('publish input', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay();
  });
  after(() => relay.stop());

  it('refuses idempotency keys that are not well-formed Unicode, instead of acking them as one message', async () => {
    // These three once got one id (UTF-8 turns a lone surrogate into U+FFFD) and only the first
    // was stored, while all three were acked.
    const first = await post(relay, 'ks.http', '{"data":"first","key":"x\\ud800"}');
    const second = await post(relay, 'ks.http', '{"data":"second","key":"x\\udfff"}');
    const array = await post(relay, 'ks.http', '[{"data":"third"},{"data":"fourth","key":"\\udc00"}]');
    for (const res of [first, second, array]) {
      assert.equal(res.status, 400, JSON.stringify(res.body));
      const { error } = res.body as ErrorBody;
      assert.equal(error.code, 'bad_frame');
      assert.match(error.message, /key: .*well-formed Unicode/);
    }
    assert.match((array.body as ErrorBody).error.message, /^\[1\]\.key/);
    const replacement = await post(relay, 'ks.http', '{"data":"fifth","key":"x\\ufffd"}');
    assert.equal(replacement.status, 202, JSON.stringify(replacement.body));
    assert.deepEqual(
      (await stored(relay, 'ks.http')).map((m) => m.data),
      ['fifth'],
    );

    const sock = await openSocket(`${relay.wsUrl}/v1/ws`);
    try {
      sock.sendRaw('{"op":"pub","topic":"ks.ws","data":"ws","key":"x\\ud800","ref":"lone"}');
      const reply = await sock.next((f: ServerFrame) => 'ref' in f && f.ref === 'lone');
      assert.equal(reply.op, 'err');
      assert.equal((reply as Extract<ServerFrame, { op: 'err' }>).code, 'bad_frame');
      assert.match((reply as Extract<ServerFrame, { op: 'err' }>).message, /key: .*well-formed Unicode/);
    } finally {
      sock.close();
    }
    assert.deepEqual(await stored(relay, 'ks.ws'), []);
  });

  it('names the field of an HTTP body that is off, and the index of an array item, as WebSocket does', async () => {
    // These all answered "Invalid input" (a union of the object and array shapes could not tell
    // which the body meant), where a WebSocket pub frame named the field.
    const many = JSON.stringify(Array.from({ length: 1001 }, () => ({ data: 1 })));
    const cases: [string, RegExp][] = [
      ['{"source":"s"}', /^data: required/],
      [many, /^an array body holds 1 to 1000 messages; this one has 1001$/],
      ['{"data":1,"ts":1.5}', /^ts: not an integer$/],
      ['{"data":1,"ts":"123"}', /^ts: .*expected number, received string/],
      ['[{"data":1},{"data":2,"ts":1.5}]', /^\[1\]\.ts: not an integer$/],
      ['[{"data":1},{"source":"s"}]', /^\[1\]\.data: required/],
    ];
    for (const [text, message] of cases) {
      const res = await post(relay, 'fields', text);
      assert.equal(res.status, 400, `${text.slice(0, 40)}: ${JSON.stringify(res.body)}`);
      const { error } = res.body as ErrorBody;
      assert.equal(error.code, 'bad_frame');
      assert.match(error.message, message, text.slice(0, 40));
    }
    assert.deepEqual(await stored(relay, 'fields'), []);
  });
});

describe('an HTTP publish of more messages than the burst', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'publish-rate': '10', 'publish-burst': '100' });
  });
  after(() => relay.stop());

  it('is too_large, saying the burst and the count, where rate_limited had the client retry for ever', async () => {
    const body = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ data: i })));
    const res = await post(relay, 'burst', body(101));
    assert.equal(res.status, 413, JSON.stringify(res.body));
    const { error } = res.body as ErrorBody;
    assert.equal(error.code, 'too_large');
    assert.match(error.message, /^101 messages in one request can never fit the publish burst of 100/);
    // It took nothing from the bucket: the burst is still whole.
    assert.equal((await post(relay, 'burst', body(100))).status, 202);
    assert.equal((await stored(relay, 'burst')).length, 100);
  });
});
