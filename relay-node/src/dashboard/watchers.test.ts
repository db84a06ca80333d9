import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createWatchers, WATCH_WINDOW_MS } from './watchers.ts';

describe('dashboard watchers', () => {
  it('is watched while a local stream is open, and for a window after a peer said so', () => {
    let clock = 0;
    const watchers = createWatchers(() => clock);
    assert.equal(watchers.any(), false);
    const release = watchers.open();
    assert.equal(watchers.local(), true);
    release();
    release(); // twice is once
    assert.equal(watchers.local(), false);
    assert.equal(watchers.any(), false);
    watchers.touchRemote();
    assert.equal(watchers.any(), true);
    assert.equal(watchers.local(), false, 'a peer watching is not passed on as local');
    clock += WATCH_WINDOW_MS;
    assert.equal(watchers.any(), false);
  });
});
