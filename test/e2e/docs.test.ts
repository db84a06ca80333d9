import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { anchorsOf, brokenLinks, ROOT } from '../docs/check-links.ts';
import { generated } from '../docs/config-doc.ts';

/** The README and docs/ as a reader meets them: short front door, links that lead somewhere, current tables. */
describe('docs', () => {
  it('every relative link in README.md and docs/ reaches a file and a heading', () => {
    assert.deepEqual(brokenLinks(), []);
  });

  it('the link check finds a missing file and a missing anchor; web links, code and pending docs pass', () => {
    const broken = brokenLinks(['test/docs/fixtures/links.md']).map((line) => line.replace(/ \(.*$/, ''));
    assert.deepEqual(broken, [
      'test/docs/fixtures/links.md: no-such-file.md',
      'test/docs/fixtures/links.md: #no-such-heading',
      'test/docs/fixtures/links.md: ../../../README.md#no-such-heading',
    ]);
  });

  it('anchors are GitHub slugs, repeated headings numbered', () => {
    const anchors = anchorsOf('# A `GET /v1/status`: the shape\n## Tests\n## Tests\n```\n# not a heading\n```\n');
    assert.deepEqual([...anchors], ['a-get-v1status-the-shape', 'tests', 'tests-1']);
  });

  it('docs/configuration.md holds the tables the config schema gives', async () => {
    const current = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
    assert.ok(current === (await generated()), 'stale: run node test/docs/config-doc.ts');
  });

  it('docs/sources.md lists relay-node/examples/sources.json as the file is', () => {
    const doc = readFileSync(join(ROOT, 'docs/sources.md'), 'utf8');
    const listed = /`relay-node\/examples\/sources\.json`:\n\n```json\n([\s\S]*?)```/.exec(doc)?.[1];
    assert.ok(listed, 'the listing is in docs/sources.md');
    const file = readFileSync(join(ROOT, 'relay-node/examples/sources.json'), 'utf8');
    assert.deepEqual(JSON.parse(listed), JSON.parse(file));
  });

  it('the README stays a front door (at most 250 lines)', () => {
    const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n').length;
    assert.ok(lines <= 250, `README.md has ${lines} lines`);
  });
});
