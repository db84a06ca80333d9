import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endpointUrl, shownUrl } from './endpoint.ts';

test('a relay or edge base URL, http or ws, becomes its /v1/ws endpoint; a full endpoint stays', () => {
  for (const [given, expected] of [
    ['http://localhost:8080', 'ws://localhost:8080/v1/ws'],
    ['http://localhost:8080/', 'ws://localhost:8080/v1/ws'],
    ['https://edge.example.com', 'wss://edge.example.com/v1/ws'],
    ['ws://127.0.0.1:9000', 'ws://127.0.0.1:9000/v1/ws'],
    ['wss://edge.example.com/v1/ws', 'wss://edge.example.com/v1/ws'],
    ['https://example.com/anode/', 'wss://example.com/anode/v1/ws'],
    ['http://h:1/v1/ws?token=t', 'ws://h:1/v1/ws?token=t'],
    ['ws://h:1/v1/topics/prices.btc/ws', 'ws://h:1/v1/topics/prices.btc/ws'],
    ['ws+unix:///tmp/relay.sock:/v1/ws', 'ws+unix:///tmp/relay.sock:/v1/ws'],
  ]) {
    assert.equal(endpointUrl(given!).toString(), expected, given);
  }
});

test('anything else is refused at once with what to give instead', () => {
  assert.throws(() => endpointUrl('localhost:8080'), /not an http\(s\) or ws\(s\) URL/);
  assert.throws(() => endpointUrl('relay'), /not a URL: "relay" \(give a relay or edge base URL/);
  assert.throws(() => endpointUrl('ftp://h/'), /not an http\(s\) or ws\(s\) URL/);
});

test('a URL shown in an error carries neither the token nor user info', () => {
  assert.equal(shownUrl(endpointUrl('https://u:p@h.example/?token=secret')), 'wss://h.example/v1/ws');
});
