import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createReservedSources } from './reserved-sources.ts';

const metaOf = (map = new Map<string, string>()) => ({
  map,
  get: (key: string) => map.get(key),
  set: (key: string, value: string) => void map.set(key, value),
  delete: (key: string) => void map.delete(key),
});

describe('reserved source names at a linked topic object', () => {
  it('falls back to accepting any name when its relay does not announce the list, and keeps that after a wake', () => {
    const meta = metaOf();
    const reserved = createReservedSources(meta);
    assert.throws(() => reserved.assertFree('weather'), { code: 'unavailable' });
    assert.equal(reserved.hello(false), true, 'no list, and none will come');
    assert.equal(reserved.state(), 'unannounced');
    reserved.assertFree('weather');
    assert.equal(createReservedSources(meta).state(), 'unannounced', 'kept in storage');
  });

  it('waits for the list again when a relay that announces it says hello, and uses it once heard', () => {
    const meta = metaOf();
    const reserved = createReservedSources(meta);
    reserved.hello(false);
    assert.equal(reserved.hello(true), false);
    assert.equal(reserved.known(), false, 'the list follows that hello: publishes wait for it');
    reserved.replace(['weather']);
    assert.throws(() => reserved.assertFree('weather'), { code: 'forbidden' });
    reserved.assertFree('bots.a');
  });

  it('keeps a list heard before when a relay without the list says hello', () => {
    const reserved = createReservedSources(metaOf());
    reserved.replace(['weather']);
    assert.equal(reserved.hello(false), false);
    assert.equal(reserved.state(), 'heard');
    assert.throws(() => reserved.assertFree('weather'), { code: 'forbidden' });
  });
});
