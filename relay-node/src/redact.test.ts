import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redactUrls } from './redact.ts';

describe('redactUrls', () => {
  it('masks userinfo and secret-looking query values, keeping the rest of the URL', () => {
    assert.equal(
      redactUrls('GET http://user:pass@feed.example/items?page=2&api_key=abc failed'),
      'GET http://***@feed.example/items?page=2&api_key=*** failed',
    );
    assert.equal(redactUrls('"https://feed.example/x?token=t0k"'), '"https://feed.example/x?token=***"');
  });

  it('masks a password holding a quote (a URL keeps it unencoded), whole', () => {
    // The userinfo stopped at the quote: "user:pa" was taken for the host and "'ss@…" left as is.
    const href = new URL("http://user:pa'ss@feed.example/items").href;
    const text = `Request cannot be constructed from a URL that includes credentials: ${href}`;
    const shown = redactUrls(text);
    assert.ok(!shown.includes('pa') && !shown.includes("'ss"), shown);
    assert.match(shown, /http:\/\/\*\*\*@feed\.example\/items$/);
  });
});
