import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_TIMER_MS } from '../config-fields.ts';
import { MAX_DEFINITION_DEPTH, parseDefinition } from './definition.ts';
import { BUILTIN_KINDS } from './kinds/builtin-kinds.ts';

const http = (extra: Record<string, unknown>) =>
  parseDefinition({ name: 's', kind: 'http', url: 'http://127.0.0.1:1/x', topic: 't.x', ...extra }, BUILTIN_KINDS);
const websocket = (extra: Record<string, unknown>) =>
  parseDefinition({ name: 's', kind: 'websocket', url: 'ws://127.0.0.1:1/x', topic: 't.x', ...extra }, BUILTIN_KINDS);
const refused = (parse: () => unknown, message: RegExp) =>
  assert.throws(parse, (error: Error) => error.name === 'SourceDefinitionError' && message.test(error.message));

describe('source definitions: refused when parsed, not on every attempt', () => {
  it('refuses a timer longer than Node can set (it would fire after 1 ms)', () => {
    for (const field of ['interval_ms', 'timeout_ms', 'backoff_min_ms', 'backoff_max_ms']) {
      assert.equal(http({ [field]: MAX_TIMER_MS })[field], MAX_TIMER_MS);
      refused(() => http({ [field]: MAX_TIMER_MS + 1 }), new RegExp(`^source s: ${field}: at most 2147483647 `));
    }
    assert.equal(websocket({ heartbeat_ms: MAX_TIMER_MS }).heartbeat_ms, MAX_TIMER_MS);
    refused(() => websocket({ heartbeat_ms: 3_000_000_000 }), /^source s: heartbeat_ms: at most 2147483647 /);
  });

  it('refuses at load a definition deeper than MAX_DEFINITION_DEPTH, and takes one held from before up to it', () => {
    // Past ~4,400 levels JSON.stringify throws: the relay stopped once the source started.
    const nested = (depth: number): unknown => JSON.parse(`${'['.repeat(depth)}1${']'.repeat(depth)}`);
    assert.ok(http({ method: 'POST', body: nested(MAX_DEFINITION_DEPTH - 1) }).body);
    refused(
      () => http({ method: 'POST', body: nested(MAX_DEFINITION_DEPTH) }),
      /^source s: \(root\): nested deeper than 2000 levels/,
    );
    refused(() => http({ method: 'POST', body: nested(5_000) }), /nested deeper than 2000 levels/);
  });

  it('refuses a body on a GET, and the HEAD method (no JSON to read)', () => {
    refused(() => http({ body: { q: 1 } }), /^source s: body: a GET request has no body/);
    refused(() => http({ method: 'GET', body: 'q=1' }), /^source s: body: a GET request has no body/);
    assert.equal(http({ method: 'POST', body: 'q=1' }).body, 'q=1');
    refused(() => http({ method: 'HEAD' }), /^source s: method: one of GET, POST, PUT, PATCH, DELETE \(HEAD/);
  });

  it('refuses header names and values fetch would refuse, without echoing the value', () => {
    for (const parse of [http, websocket]) {
      refused(
        () => parse({ headers: { 'x api key': 'k' } }),
        /^source s: headers\.x api key: "x api key" is not a valid header name$/,
      );
      assert.throws(
        () => parse({ headers: { authorization: 'Bearer secret\r\nx-injected: 1' } }),
        (error: Error) =>
          /^source s: headers\.authorization: not a valid header value/.test(error.message) &&
          !error.message.includes('secret'),
      );
      refused(() => parse({ headers: { 'x-price': '5 €' } }), /headers\.x-price: not a valid header value/);
      assert.deepEqual(parse({ headers: { 'x-api-key': 'k' } }).headers, { 'x-api-key': 'k' });
    }
  });

  it('refuses a JSONPath that does not parse, in every path field', () => {
    for (const field of ['items_path', 'id_path', 'ts_path', 'topic_path']) {
      refused(() => http({ [field]: '$[' }), new RegExp(`^source s: ${field}: not a valid JSONPath: unclosed "\\["$`));
      refused(
        () => http({ [field]: '$.a]' }),
        new RegExp(`^source s: ${field}: not a valid JSONPath: unexpected "\\]"`),
      );
      refused(
        () => http({ [field]: "$['a" }),
        new RegExp(`^source s: ${field}: not a valid JSONPath: unclosed ' quote`),
      );
    }
    // A filter is compiled now, not when it first meets an item.
    refused(
      () => http({ items_path: '$.data[?(@.price >)]' }),
      /^source s: items_path: not a valid JSONPath: "\?\(@\.price >\)": Expected expression after >/,
    );
    for (const path of [
      '$.data[*]',
      '$..trades',
      "$['a.b']",
      '$.data[?(@.price > 1 && @.symbol == "x]")]',
      '$[?(@.a[?(@.b)])]',
      '$.a[(@.length-1)]',
      '$[0:2]',
      'data',
    ]) {
      assert.equal(http({ items_path: path }).items_path, path);
    }
  });
});
