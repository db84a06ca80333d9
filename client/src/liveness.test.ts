import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { afterSilence, answerWithin, KEEPALIVE_MS, keepaliveInterval, numberOption, watchSocket } from './liveness.ts';

test('keepalive is 30 s by default and off for false or 0', () => {
  assert.equal(keepaliveInterval(undefined), 30_000);
  assert.equal(keepaliveInterval(500), 500);
  assert.equal(keepaliveInterval(false), undefined);
  assert.equal(keepaliveInterval(0), undefined);
});

test('an upgrade not answered within the interval is dropped; an opened one is pinged', (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  t.after(() => mock.timers.reset());
  const drops: string[] = [];
  let pings = 0;
  const silent = watchSocket(
    100,
    () => true,
    (why) => drops.push(why),
  );
  mock.timers.tick(100);
  assert.match(drops[0] ?? '', /upgrade/);
  silent.stop();

  const live = watchSocket(
    100,
    () => ++pings > 0,
    (why) => drops.push(why),
  );
  live.opened();
  for (let n = 0; n < 5; n++) {
    mock.timers.tick(100);
    live.heard(); // the pong
  }
  assert.equal(drops.length, 1, 'a connection that answers is kept');
  assert.equal(pings, 5);
  mock.timers.tick(100); // pinged, nothing heard since
  mock.timers.tick(100);
  assert.match(drops[1] ?? '', /keepalive ping/);
  live.stop();
});

test('a token function that never answers is refused after the interval; an answer is passed on', async () => {
  assert.equal(await answerWithin(Promise.resolve('t'), 1_000), 't');
  assert.equal(await answerWithin('t', undefined), 't');
  await assert.rejects(answerWithin(new Promise(() => {}), 5), /no answer within 5 ms/);
});

test('an interval no timer can keep (Infinity, past ~24.8 days) turns keepalive off instead of firing at once', () => {
  assert.equal(keepaliveInterval(Number.POSITIVE_INFINITY), undefined);
  assert.equal(keepaliveInterval(2 ** 31), undefined);
  assert.equal(keepaliveInterval(2 ** 31 - 2), 2 ** 31 - 2);
});

test('a tick long overdue (the event loop was blocked) pings again instead of dropping', (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  t.after(() => mock.timers.reset());
  let clock = 1_000_000;
  const drops: string[] = [];
  let pings = 0;
  const watch = watchSocket(
    100,
    () => ++pings > 0,
    (why) => drops.push(why),
    () => clock,
  );
  watch.opened();
  clock += 100;
  mock.timers.tick(100); // pinged; its answer is not read yet
  clock += 500; // the event loop blocked for 400 ms past the next tick
  mock.timers.tick(100); // the overdue tick: no drop, a new ping
  assert.deepEqual(drops, []);
  assert.equal(pings, 2);
  clock += 100;
  mock.timers.tick(100); // on time now, and still nothing heard
  assert.match(drops[0] ?? '', /keepalive ping/);
  watch.stop();
});

test('a wait for an answer gives up after a whole interval with nothing heard, not while frames keep coming', (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  let clock = 1_000_000;
  let heardAt = clock - 5_000; // heard long before the wait began: counted from the wait
  let silent = 0;
  afterSilence(
    100,
    () => heardAt,
    () => (silent += 1),
    () => clock,
  );
  for (let n = 0; n < 5; n++) {
    clock += 60;
    heardAt = clock; // a frame (a replay ahead of the answer)
    mock.timers.tick(60);
  }
  assert.equal(silent, 0, 'kept waiting while frames came');
  clock += 100;
  mock.timers.tick(100);
  assert.equal(silent, 1, 'given up after 100 ms of silence');
  const cancel = afterSilence(
    100,
    () => 0,
    () => (silent += 1),
    () => clock,
  );
  cancel();
  mock.timers.tick(200);
  assert.equal(silent, 1, 'a cancelled wait never gives up');
});

test('keepaliveInterval: null, NaN or below 0 is the default interval, not off; 0, false and Infinity are off', () => {
  assert.equal(keepaliveInterval(undefined), KEEPALIVE_MS);
  assert.equal(keepaliveInterval(Number.NaN), KEEPALIVE_MS);
  assert.equal(keepaliveInterval(-1), KEEPALIVE_MS);
  assert.equal(keepaliveInterval(null), KEEPALIVE_MS, 'null (JSON) is the default, not off');
  assert.equal(keepaliveInterval('5000' as unknown as number), 5000, 'a numeric string is its number');
  assert.equal(keepaliveInterval('soon' as unknown as number), KEEPALIVE_MS);
  assert.equal(keepaliveInterval(250), 250);
  assert.equal(keepaliveInterval(0), undefined);
  assert.equal(keepaliveInterval(false), undefined);
  assert.equal(keepaliveInterval(Number.POSITIVE_INFINITY), undefined);
});

test('numberOption: a number of 0 or more as given, a numeric string as its number, anything else the default', () => {
  assert.deepEqual(
    [0, 5, Number.POSITIVE_INFINITY, '5000', ' 7 ', undefined, null, Number.NaN, -1, '', 'x', true, {}].map((v) =>
      numberOption(v, 42),
    ),
    [0, 5, Number.POSITIVE_INFINITY, 5000, 7, 42, 42, 42, 42, 42, 42, 42, 42],
  );
});
