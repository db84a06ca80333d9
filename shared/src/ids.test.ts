import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isWellFormedText } from './names.ts';
import {
  CURSOR_ZERO,
  MAX_CLOCK_SKEW_MS,
  compareCursors,
  contentId,
  createHybridClock,
  cursorTime,
  isCursor,
  isNodeId,
  messageId,
  randomId,
  randomNodeId,
} from './ids.ts';

/** A wall clock that returns `times` in turn, then repeats the last one. */
function scripted(times: number[]): () => number {
  let i = 0;
  return () => times[Math.min(i++, times.length - 1)] ?? 0;
}

function assertStrictlyIncreasing(cursors: string[]): void {
  for (let i = 1; i < cursors.length; i++) {
    const [before, after] = [cursors[i - 1] as string, cursors[i] as string];
    assert.ok(compareCursors(before, after) < 0, `${before} !< ${after}`);
  }
}

const T = 1_700_000_000_000;
// Times stay well under 2^48 ms, the 12 hex digits a cursor has for them.
// Half the time near T, so that clocks and observed cursors collide and differ by one.
const wallTime = fc.oneof(fc.integer({ min: T - 2, max: T + 2 }), fc.integer({ min: 0, max: 2 ** 44 }));
const counter = fc.oneof(
  fc.integer({ min: 0, max: 3 }),
  fc.constantFrom(0xfffe, 0xffff),
  fc.integer({ min: 0, max: 0xffff }),
);
const nodeId = fc.string({ unit: fc.constantFrom(...'abcxyz0189'), minLength: 1, maxLength: 32 });

describe('hybrid clock', () => {
  test('mints well-formed cursors that carry the wall time and node id', () => {
    const clock = createHybridClock('node1', () => T);
    const cursor = clock.next();
    assert.equal(isCursor(cursor), true);
    assert.equal(cursorTime(cursor), T);
    assert.ok(cursor.endsWith('-node1'));
    assert.equal(clock.nodeId, 'node1');
  });

  test('cursors sort by mint order whatever the wall clock does', () => {
    fc.assert(
      fc.property(nodeId, fc.array(wallTime, { minLength: 1, maxLength: 200 }), (id, times) => {
        const clock = createHybridClock(id, scripted(times));
        const cursors = times.map(() => clock.next());
        assert.ok(cursors.every(isCursor));
        assertStrictlyIncreasing(cursors);
        assert.deepEqual([...cursors].sort(compareCursors), cursors);
      }),
    );
  });

  test('stays strictly monotonic when the wall clock steps backwards or repeats', () => {
    const clock = createHybridClock('n', scripted([T, T, T - 5_000, T - 5_000, T + 1, T]));
    const cursors = Array.from({ length: 6 }, () => clock.next());
    assertStrictlyIncreasing(cursors);
    assert.equal(cursorTime(cursors[2] as string), T, 'a backwards step keeps the last physical time');
  });

  test('borrows the next millisecond after 65,536 cursors in one millisecond, and stays monotonic as time catches up', () => {
    const times = [...Array(70_000).fill(T), ...Array(10).fill(T + 1), T + 2];
    const clock = createHybridClock('n', scripted(times));
    const cursors = times.map(() => clock.next());
    assertStrictlyIncreasing(cursors);
    assert.equal(new Set(cursors).size, cursors.length);
    assert.equal(cursorTime(cursors[65_535] as string), T);
    assert.equal(cursorTime(cursors[65_536] as string), T + 1);
    assert.equal(cursorTime(cursors.at(-1) as string), T + 2);
  });

  test('observe moves the clock past a remote cursor from the future', () => {
    const remote = createHybridClock('remote', () => T + 60_000).next();
    const local = createHybridClock('local', () => T);
    local.observe(remote);
    const next = local.next();
    assert.ok(compareCursors(remote, next) < 0);
    assert.equal(cursorTime(next), T + 60_000);
  });

  test('observe moves past a remote cursor one step ahead in the same or the next millisecond, even from a higher node id', () => {
    const ahead = [
      `${T.toString(16).padStart(12, '0')}0001-zzz`,
      `${T.toString(16).padStart(12, '0')}0009-zzz`,
      `${(T + 1).toString(16).padStart(12, '0')}0000-zzz`,
    ];
    for (const remote of ahead) {
      const local = createHybridClock('aaa', () => T);
      local.next();
      local.observe(remote);
      assert.ok(compareCursors(remote, local.next()) < 0, remote);
    }
  });

  test('observe of a saturated counter borrows a millisecond rather than overflow', () => {
    const remote = `${T.toString(16).padStart(12, '0')}ffff-remote`;
    const local = createHybridClock('local', () => T);
    local.observe(remote);
    const next = local.next();
    assert.ok(compareCursors(remote, next) < 0);
    assert.equal(isCursor(next), true);
  });

  test('observe ignores cursors further ahead than the allowed clock skew', () => {
    const T = 1_700_000_000_000;
    const clock = createHybridClock('me', () => T);
    const far = createHybridClock('far', () => T + MAX_CLOCK_SKEW_MS + 1).next();
    assert.equal(clock.observe(far), false);
    assert.equal(cursorTime(clock.next()), T);
    const near = createHybridClock('near', () => T + MAX_CLOCK_SKEW_MS).next();
    assert.equal(clock.observe(near), true);
    assert.ok(compareCursors(near, clock.next()) < 0);
  });

  test('observe ignores older cursors, CURSOR_ZERO and junk', () => {
    const clock = createHybridClock('n', scripted([T, T, T, T]));
    const first = clock.next();
    clock.observe(createHybridClock('old', () => T - 1000).next());
    clock.observe(CURSOR_ZERO);
    clock.observe('not a cursor');
    clock.observe('ffffffffffffffff');
    const second = clock.next();
    assert.ok(compareCursors(first, second) < 0);
    assert.equal(cursorTime(second), T);
  });

  test('every minted cursor sorts after everything minted or accepted by observe before it', () => {
    const step = fc.oneof(
      wallTime.map((time) => ({ mint: true as const, time })),
      fc.record({
        mint: fc.constant(false as const),
        time: wallTime,
        count: counter,
        node: fc.constantFrom('a', 'me', 'zz'),
      }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 100 }), (steps) => {
        let wall = 0;
        const clock = createHybridClock('me', () => wall);
        let highest = CURSOR_ZERO;
        for (const s of steps) {
          if (s.mint) {
            wall = s.time;
            const cursor = clock.next();
            assert.ok(compareCursors(highest, cursor) < 0, `${cursor} after ${highest}`);
            highest = cursor;
          } else {
            const seen = `${s.time.toString(16).padStart(12, '0')}${s.count.toString(16).padStart(4, '0')}-${s.node}`;
            clock.observe(seen);
            // Only cursors beyond the allowed skew may be ignored; everything else must be passed.
            if (s.time <= wall + MAX_CLOCK_SKEW_MS && compareCursors(highest, seen) < 0) highest = seen;
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  test('refuses node ids that would break cursor ordering or parsing', () => {
    for (const bad of ['', 'Node', 'a-b', 'a.b', 'x'.repeat(33), 'é']) {
      assert.throws(() => createHybridClock(bad), TypeError, JSON.stringify(bad));
    }
  });
});

describe('cursor checks', () => {
  test('isCursor accepts CURSOR_ZERO and minted cursors', () => {
    assert.equal(isCursor(CURSOR_ZERO), true);
    fc.assert(fc.property(nodeId, wallTime, (id, time) => isCursor(createHybridClock(id, () => time).next())));
  });

  test('isCursor rejects junk', () => {
    const junk = [
      '',
      '00',
      '0-a',
      'ffffffffffffffff',
      'ffffffffffffffff-',
      'FFFFFFFFFFFFFFFF-a',
      'fffffffffffffff-a',
      'ffffffffffffffff-A',
      'ffffffffffffffff_a',
      `ffffffffffffffff-${'a'.repeat(33)}`,
      'ffffffffffffffff-a\n',
      ' 0',
      0,
      null,
      undefined,
      {},
    ];
    for (const value of junk) assert.equal(isCursor(value), false, JSON.stringify(value));
  });

  test('isCursor rejects every string that does not fit the cursor shape', () => {
    const fits = (s: string) =>
      s === '0' ||
      (s.length >= 18 &&
        s.length <= 49 &&
        s[16] === '-' &&
        [...s.slice(0, 16)].every((c) => '0123456789abcdef'.includes(c)) &&
        [...s.slice(17)].every((c) => 'abcdefghijklmnopqrstuvwxyz0123456789'.includes(c)));
    const valid = fc.tuple(wallTime, nodeId).map(([time, id]) => createHybridClock(id, () => time).next());
    // Near misses: valid cursors with one character replaced, inserted or dropped.
    const mutated = fc
      .tuple(
        valid,
        fc.nat(),
        fc.constantFrom('', 'g', 'A', '-', '0', 'z', '.', ' '),
        fc.constantFrom('replace', 'insert'),
      )
      .map(([c, at, ch, how]) => {
        const i = at % (c.length + 1);
        return how === 'replace' ? c.slice(0, i) + ch + c.slice(i + 1) : c.slice(0, i) + ch + c.slice(i);
      });
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), mutated), (s) => {
        assert.equal(isCursor(s), fits(s));
      }),
      { numRuns: 3000 },
    );
  });

  test('CURSOR_ZERO sorts before every minted cursor and has time 0', () => {
    assert.equal(cursorTime(CURSOR_ZERO), 0);
    fc.assert(
      fc.property(
        nodeId,
        wallTime,
        (id, time) => compareCursors(CURSOR_ZERO, createHybridClock(id, () => time).next()) < 0,
      ),
    );
  });

  test('isNodeId accepts what randomNodeId makes', () => {
    for (const length of [1, 10, 32]) {
      const id = randomNodeId(length);
      assert.equal(id.length, length);
      assert.equal(isNodeId(id), true);
    }
  });
});

describe('message ids', () => {
  test('contentId is deterministic and url-safe', () => {
    const id = contentId('prices.btc', 'feed', 'k1');
    assert.equal(contentId('prices.btc', 'feed', 'k1'), id);
    assert.match(id, /^k[A-Za-z0-9_-]{22}$/);
  });

  test('contentId of plain fields is base64url(sha256("topic\\nsource\\nkey")[0..16]), so stored ids stay valid', () => {
    assert.equal(contentId('prices.btc', 'feed', 'k1'), 'kdubYl5akKhigY1rYhQuE4g');
  });

  test('contentId differs when topic, source or key differ', () => {
    // Separator and escape characters are generated on purpose, and half the second triples
    // re-split the first one's fields at other newlines: the id must not be fooled by either.
    const part = fc.string({ unit: fc.constantFrom('a', 'b', '\n', '\\', 'n', 'é'), maxLength: 6 });
    const triple = fc.tuple(part, part, part);
    const resplit = (a: [string, string, string]) => {
      const joined = a.join('\n');
      const newlines = [...joined].flatMap((c, i) => (c === '\n' ? [i] : []));
      return fc.uniqueArray(fc.constantFrom(...newlines), { minLength: 2, maxLength: 2 }).map(([x, y]) => {
        const [i, j] = [Math.min(x as number, y as number), Math.max(x as number, y as number)];
        return [joined.slice(0, i), joined.slice(i + 1, j), joined.slice(j + 1)] as [string, string, string];
      });
    };
    const pair = triple.chain((a) => fc.tuple(fc.constant(a), fc.oneof(triple, resplit(a))));
    fc.assert(
      fc.property(pair, ([a, b]) => {
        const same = a.every((x, i) => x === b[i]);
        assert.equal(contentId(...a) === contentId(...b), same, JSON.stringify([a, b]));
      }),
      { numRuns: 5000 },
    );
  });

  test('contentId does not collide when a newline moves between source and key', () => {
    assert.notEqual(contentId('t', 'a\nb', 'c'), contentId('t', 'a', 'b\nc'));
    assert.notEqual(contentId('t\na', 'b', 'c'), contentId('t', 'a\nb', 'c'));
  });

  test('contentId of fields that are not well-formed Unicode: its own id, no collision, no refusal', () => {
    // UTF-8 turned each lone surrogate into U+FFFD, so these keys shared one id. The parsers
    // refuse such client keys; a source's item id from upstream JSON still gets an id of its own.
    const keys = ['x\ud800', 'x\udfff', 'x\ufffd', '\udc00', 'x\ud800\ud800'];
    const ids = keys.map((key) => contentId('t', 's', key));
    assert.equal(new Set(ids).size, keys.length, JSON.stringify(ids));
    for (const id of ids) assert.match(id, /^k[A-Za-z0-9_-]{22}$/);
    assert.equal(contentId('t', 's', 'x\ud800'), contentId('t', 's', 'x\ud800'));
    assert.notEqual(contentId('t', '\ud800', 'k'), contentId('t', '\ufffd', 'k'));
    assert.notEqual(contentId('t', 's', '\ud83d\udd11'), contentId('t', 's', '\ufffd'));
    // Well-formed text keeps the id it always had (stored ids stay valid).
    assert.equal(contentId('prices.btc', 'feed', 'k1'), 'kdubYl5akKhigY1rYhQuE4g');
  });

  test('isWellFormedText agrees with String.prototype.isWellFormed', () => {
    const unit = fc.constantFrom('a', '\ud800', '\udbff', '\udc00', '\udfff', '\ufffd', '\ud83d\udd11');
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 6 }), (parts) => {
        const text = parts.join('');
        const native = (text as unknown as { isWellFormed(): boolean }).isWellFormed();
        assert.equal(isWellFormedText(text), native, JSON.stringify(text));
      }),
      { numRuns: 2000 },
    );
  });

  test('randomId is unique over many draws and distinct from content ids', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 20_000; i++) ids.add(randomId());
    assert.equal(ids.size, 20_000);
    for (const id of ids) assert.match(id, /^r[A-Za-z0-9_-]{22}$/);
  });

  test('messageId: the shape of a random id, unique within one millisecond, its time in front', () => {
    const at = 1_764_400_000_123;
    const ids = new Set<string>();
    for (let i = 0; i < 20_000; i++) ids.add(messageId(at));
    assert.equal(ids.size, 20_000);
    for (const id of ids) assert.match(id, /^r[A-Za-z0-9_-]{22}$/);
    // Six bytes of time are the first eight characters after `r`.
    const prefixes = new Set([...ids].map((id) => id.slice(0, 9)));
    assert.deepEqual([...prefixes], [messageId(at).slice(0, 9)]);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    let time = 0;
    for (const c of messageId(at).slice(1, 9)) time = time * 64 + alphabet.indexOf(c);
    assert.equal(time, at);
    assert.notEqual(messageId(at + 1).slice(0, 9), messageId(at).slice(0, 9));
  });
});
