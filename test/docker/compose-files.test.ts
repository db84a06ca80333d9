// The compose files and the deploy test's own bookkeeping, read as text: no Docker needed. What
// the files must keep (a reviewer lost acked messages to a relay with no named /data volume, and
// `up --build` built the same image once per service).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ownerPid, ROOT, withRelay } from './compose.ts';

const FILES = ['docker-compose.yml', 'docker-compose.embedded.yml'];

/** The service blocks of a compose file: name → its lines (the files are written this way). */
function services(text: string): Map<string, string[]> {
  const lines = text.split('\n');
  const start = lines.indexOf('services:');
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line)) break;
    const name = /^ {2}([\w-]+):\s*$/.exec(line)?.[1];
    if (name) out.set(name, (current = []));
    else if (line.startsWith('    ')) current?.push(line);
  }
  return out;
}

const topVolumes = (text: string) => {
  const lines = text.split('\n');
  const names: string[] = [];
  for (const line of lines.slice(lines.indexOf('volumes:') + 1)) {
    const name = /^ {2}([\w-]+):/.exec(line)?.[1];
    if (name) names.push(name);
    else if (/^\S/.test(line)) break;
  }
  return names;
};

const seconds = (value: string) => Number(/^(\d+)s$/.exec(value)?.[1] ?? Number.NaN);

for (const file of FILES) {
  describe(file, () => {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const all = services(text);
    const relays = [...all].filter(([, lines]) => lines.some((line) => line.includes('<<: *relay')));

    it('has relays 1 to 3, each with a named /data volume of its own (its node id and spool)', () => {
      assert.deepEqual(
        relays.map(([name]) => name),
        ['relay1', 'relay2', 'relay3'],
      );
      const declared = topVolumes(text);
      const used = new Set<string>();
      for (const [name, lines] of relays) {
        const volume = /\[([\w-]+):\/data,/.exec(lines.join('\n'))?.[1];
        assert.ok(volume, `${name} mounts a named volume on /data`);
        assert.ok(declared.includes(volume), `${volume} is declared under volumes:`);
        assert.ok(!used.has(volume), `${name} has a volume of its own`);
        used.add(volume);
      }
    });

    it('has no scaled or profiled services (they would get anonymous /data volumes)', () => {
      assert.doesNotMatch(text, /relay-extra|profiles:|scale/);
    });

    it('builds the image in one service, which every relay waits for', () => {
      const building = [...all].filter(([, lines]) => lines.some((line) => /^ {4}build:/.test(line)));
      assert.deepEqual(
        building.map(([name]) => name),
        ['mesh-key'],
      );
      assert.equal(text.match(/^\s*build:/gm)?.length, 1, 'no build: elsewhere (an anchor the relays share)');
      // The relays wait for mesh-key through mesh-key-ok, which never changes: Compose v2 stops the
      // dependents of a service it recreates (mesh-key, when ANODE_MESH_KEY changes).
      assert.match(
        text,
        /depends_on: &relay-depends\n {4}mesh-key-ok: \{ condition: service_completed_successfully \}/,
      );
      const gate = all.get('mesh-key-ok')?.join('\n') ?? '';
      assert.match(gate, /depends_on:\n {6}mesh-key: \{ condition: service_completed_successfully \}/);
      assert.doesNotMatch(gate, /environment|ANODE_/, 'nothing in mesh-key-ok changes with the settings');
      for (const [name, lines] of relays) {
        assert.doesNotMatch(lines.join('\n'), /^ {6}mesh-key:/m, `${name} does not depend on mesh-key directly`);
      }
    });

    it('never pulls the image it builds (Compose v2 would fetch a missing anode/relay from Docker Hub)', () => {
      assert.match(
        text,
        /x-image: &image\n {2}image: \$\{ANODE_IMAGE:-anode\/relay:latest\}\n(?: {2}#.*\n)* {2}pull_policy: never\n/,
      );
      const usesImage = [...all].filter(([, lines]) =>
        lines.some((line) => /<<: \*(?:image|relay)$/.test(line.trim())),
      );
      assert.deepEqual(
        usesImage.map(([name]) => name),
        ['mesh-key', 'mesh-key-ok', 'relay1', 'relay2', 'relay3'],
      );
      assert.equal(text.match(/image: \$\{ANODE_IMAGE/g)?.length, 1, 'named in the anchor only');
    });

    it('checks health every 15 to 30 s (each check starts a Node process)', () => {
      const interval = /healthcheck: \{ interval: (\w+),/.exec(text)?.[1] ?? '';
      assert.ok(seconds(interval) >= 15 && seconds(interval) <= 30, `interval ${interval}`);
    });

    it('passes ANODE_MESH_KEY_ROTATE to the mesh-key step', () => {
      assert.match(all.get('mesh-key')?.join('\n') ?? '', /ANODE_MESH_KEY_ROTATE: \$\{ANODE_MESH_KEY_ROTATE:-\}/);
    });

    it('gains a relay as docs/deploy.md says: relay3 copied with its own volume and port', () => {
      const added = withRelay(text, 4);
      const block = services(added).get('relay4')?.join('\n') ?? '';
      assert.match(block, /<<: \*relay/);
      assert.match(block, /\$\{ANODE_RELAY4_PORT:-8084\}:8080/);
      assert.match(block, /\[relay4-data:\/data, mesh-key:\/keys:ro\]/);
      assert.ok(topVolumes(added).includes('relay4-data'));
      assert.deepEqual(services(added).get('relay3'), all.get('relay3'), 'relay3 is untouched');
    });
  });
}

describe('docs/deploy.md', () => {
  const text = readFileSync(join(ROOT, 'docs/deploy.md'), 'utf8');
  it('shows adding a relay as the deploy test does it, and never scaling a service', () => {
    assert.match(text, /ports: \['127\.0\.0\.1:\$\{ANODE_RELAY4_PORT:-8084\}:8080'\]/);
    assert.match(text, /volumes: \[relay4-data:\/data, mesh-key:\/keys:ro\]/);
    assert.doesNotMatch(text, /relay-extra|--scale|--profile/);
  });
  it('runs a relay alone with a restart policy, and says how to build offline', () => {
    assert.match(text, /docker run -d --name relay1 --restart unless-stopped/);
    assert.match(text, /--build-arg\s+BASE_IMAGE=anode\/base-node:24/);
  });
});

describe('stale resources of earlier runs', () => {
  it('are told by the test process id in their names', () => {
    assert.equal(ownerPid('anodetest21401bc1c5f_relay1-data'), 21401);
    assert.equal(ownerPid('anodetest21401bc1c5f_default'), 21401);
    assert.equal(ownerPid('anodetest21401bc1c5f_mesh-key_1'), 21401);
    assert.equal(ownerPid('anodetest12345abcd-data'), 123, 'the 6 hex digits may start with digits');
    assert.equal(ownerPid('anodetest7a1b2c3'), 7);
    assert.equal(ownerPid('anode/relay:test-21401-1f2237'), 21401);
    assert.equal(ownerPid('anode/relay:test-21401-1f2237-up'), 21401);
    for (const other of [
      'anode/relay:latest',
      'anode/base-node:24',
      'anodetest',
      'myanodetest1abcdef',
      'relay1-data',
    ]) {
      assert.equal(ownerPid(other), undefined, other);
    }
  });
});
