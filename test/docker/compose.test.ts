// The deploy artefacts, built and run for real: the relay image (Dockerfile) and both compose
// shapes (docker-compose.yml: three relays in a private mesh sharing Cassandra;
// docker-compose.embedded.yml: three full replicas, plus a relay added as docs/deploy.md says).
//
// Docker Hub is not reachable from CI, so the base images are STAND-INS built locally by
// test/docker/base-images.ts: anode/base-node:24 stands in for node:24-bookworm-slim (Debian
// bookworm from debootstrap + the lockfile's Node 24) and anode/cassandra:5.0 for cassandra:5.0
// (Maven Central jars + Debian's OpenJDK 17). The relay image itself is built from this repo's
// Dockerfile exactly as a user would, with only BASE_IMAGE pointed at the stand-in.
//
// Needs a running Docker daemon and Compose (bash .ci/run installs and starts them); without
// them this test fails, it is not skipped.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createClient } from '@anode/client';
import type { Envelope } from '@anode/shared';
import { history } from '../helpers/relay.ts';
import { type Collector, meshStatus, publish, waitFor } from '../helpers/mesh.ts';
import { exitGraceAtLeast } from '../tools/exit-watchdog.ts';
import { buildBaseImages } from './base-images.ts';
import {
  buildRelayImage,
  type ComposeProject,
  composeProject,
  docker,
  imageSizeBytes,
  removeStale,
  requireDocker,
  ROOT,
  runName,
  testImageTag,
  withRelay,
} from './compose.ts';

const IMAGE = testImageTag();
// The image the embedded cluster's `up -d --build` makes (a tag of its own: a fresh `up`).
const COMPOSE_IMAGE = `${IMAGE}-up`;
const log = (line: string) => console.log(`[docker] ${line}`);
const MINUTE = 60_000;

const items = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ data: { n: i, tag: `${prefix}-${i}` } }));
const idsOf = (messages: Envelope[]) => new Set(messages.map((m) => m.id));

/** Every relay has the other two (at least) as mesh peers. */
async function waitForMesh(urls: string[], peers = urls.length - 1) {
  await waitFor(
    `a mesh of ${urls.length} relays`,
    async () => (await Promise.all(urls.map(meshStatus))).every((s) => s.peers.length >= peers),
    120_000,
    500,
  );
}

/**
 * A live subscriber on a relay, put in `into` before it is ready, so that the suite's `after`
 * closes it whatever happens. Unlike the mesh helper's `collect`, one that fails is closed here:
 * its client would otherwise reconnect for ever and keep the test process from exiting.
 */
async function subscribe(into: Collector[], wsUrl: string, pattern: string): Promise<Collector> {
  const client = createClient({ url: wsUrl, reconnect: { initialDelayMs: 50, maxDelayMs: 250 } });
  const received: Envelope[] = [];
  const sub = client.subscribe(pattern, (m) => received.push(m));
  const collector: Collector = { client, sub, received, ids: () => new Set(received.map((m) => m.id)) };
  into.push(collector);
  try {
    await sub.ready;
  } catch (error) {
    client.close();
    throw error;
  }
  return collector;
}

/** Closes every subscriber in the list (and empties it); never throws. */
function closeAll(subscribers: Collector[]) {
  for (const s of subscribers.splice(0)) {
    try {
      s.client.close();
    } catch (error) {
      log(`closing a subscriber: ${(error as Error).message}`);
    }
  }
}

async function waitForIds(collector: Collector, ids: string[], what: string) {
  await waitFor(what, () => ids.every((id) => collector.ids().has(id)), 30_000);
}

async function assertDashboards(urls: string[]) {
  for (const url of urls) {
    const res = await fetch(`${url}/`);
    const page = await res.text();
    assert.equal(res.status, 200, `${url}/ answers`);
    // The built page references its hashed bundle; the fallback says "Dashboard not built".
    assert.match(page, /\/dashboard\/assets\/[^"]+\.js/, `${url}/ serves the built dashboard`);
    assert.doesNotMatch(page, /not built/);
  }
}

let started = 0;
before(
  async () => {
    started = Date.now();
    log(`compose: ${await requireDocker()}`);
    // What killed runs left would stay forever (containers, volumes, networks, images).
    await removeStale(log);
    await buildBaseImages({ log });
    log(`base images ready after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    const seconds = await buildRelayImage(IMAGE);
    const size = await imageSizeBytes(IMAGE);
    log(`relay image ${IMAGE} built in ${seconds.toFixed(0)} s, ${(size / 1e6).toFixed(0)} MB`);
  },
  { timeout: 30 * MINUTE },
);

after(
  async () => {
    // The relay image and the build stage's leftovers; the stand-in base images stay as a cache.
    await docker('image', 'rm', '-f', IMAGE, COMPOSE_IMAGE).catch((error: Error) =>
      log(`image cleanup: ${error.message}`),
    );
    await docker('image', 'prune', '-f', '--filter', 'label=anode.stage=build').catch(() => {});
    log(`docker tests took ${((Date.now() - started) / 1000).toFixed(0)} s in all`);
  },
  // Removing the images takes over a minute on a loaded machine.
  { timeout: 10 * MINUTE },
);
// The exit watchdog (npm test) counts this file's top-level hook in its grace.
exitGraceAtLeast(11 * MINUTE);

describe('docker image', { timeout: 5 * MINUTE }, () => {
  it('runs as the node user, with every setting from ANODE_* variables, and answers its healthcheck', async () => {
    const name = runName();
    const volume = `${name}-data`;
    try {
      // A fresh named volume on /data: it must be writable by the runtime user.
      await docker(
        'run',
        '-d',
        '--name',
        name,
        '-v',
        `${volume}:/data`,
        '-e',
        'ANODE_PORT=9090',
        '-e',
        'ANODE_RETENTION_MAX_MESSAGES=7',
        IMAGE,
      );
      await waitFor(
        'the container to be healthy',
        async () => (await docker('inspect', '--format', '{{.State.Health.Status}}', name)).trim() === 'healthy',
        90_000,
        500,
      );
      assert.equal((await docker('exec', name, 'id', '-un')).trim(), 'node');
      assert.match(await docker('exec', name, 'cat', '/data/node-id'), /\S/);
      // ANODE_PORT moved the listener (the healthcheck follows it).
      const ok = await docker(
        'exec',
        name,
        'node',
        '-e',
        "fetch('http://127.0.0.1:9090/healthz').then(r=>console.log(r.status))",
      );
      assert.equal(ok.trim(), '200');
      const bad = await docker('run', '--rm', '-v', `${volume}:/data`, '-e', 'ANODE_PORT=nope', IMAGE).then(
        () => '',
        (error: Error) => error.message,
      );
      assert.match(bad, /ANODE_PORT/, 'a bad ANODE_* value is refused by name');
    } finally {
      await docker('rm', '-f', '-v', name).catch(() => {});
      await docker('volume', 'rm', '-f', volume).catch(() => {});
    }
  });

  it('is labelled as the relay, and holds no test helpers', async () => {
    const labels = JSON.parse(await docker('image', 'inspect', '--format', '{{json .Config.Labels}}', IMAGE)) as Record<
      string,
      string
    >;
    assert.equal(labels['org.opencontainers.image.title'], 'anode/relay');
    assert.equal(labels['org.opencontainers.image.licenses'], 'Apache-2.0');
    assert.ok(!('anode.stage' in labels), 'not the build stage');
    const found = await docker(
      'run',
      '--rm',
      '--entrypoint',
      'find',
      IMAGE,
      '/app/relay-node',
      '/app/shared',
      '-path',
      '*/node_modules',
      '-prune',
      '-o',
      '(',
      '-name',
      '*.test.ts',
      '-o',
      '-name',
      '*.fixture.ts',
      '-o',
      '-name',
      '*.compliance.ts',
      '-o',
      '-name',
      'test-peer.ts',
      '-o',
      '-name',
      'test-hub.ts',
      '-o',
      '-name',
      'node-test.d.ts',
      ')',
      '-print',
    );
    assert.equal(found.trim(), '', 'no test files or helpers');
    // The relay still has what it imports (the healthcheck test above ran it).
    assert.match(await docker('run', '--rm', IMAGE, '--help'), /ANODE_/);
  });

  it('refuses a root-owned host folder on /data, saying to chown it to uid 1000', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'anode-bind-'));
    try {
      chmodSync(folder, 0o755); // root's (this test runs as root to drive Docker), not the relay's
      const refused = await docker('run', '--rm', '-v', `${folder}:/data`, IMAGE).then(
        () => 'it started',
        (error: Error) => error.message,
      );
      assert.match(refused, /exited with 3/);
      assert.match(refused, /the data folder \/data and its files must be owned by the relay's user \(uid 1000\)/);
      assert.match(refused, /chown -R 1000:1000 <host folder>/);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});

describe('docker-compose.yml: three relays in a private mesh sharing Cassandra', { timeout: 20 * MINUTE }, () => {
  let project: ComposeProject;
  let urls: string[];
  const published: string[] = [];
  let nodeIds: string[] = [];
  const subscribers: Collector[] = [];

  before(
    async () => {
      // ANODE_MESH_KEY is not set: the mesh-key step generates one.
      project = await composeProject('docker-compose.yml', IMAGE);
      urls = project.urls;
      const t = Date.now();
      await project.up('--no-build');
      await project.waitHealthy();
      await waitForMesh(urls);
      log(`cassandra cluster up and meshed in ${((Date.now() - t) / 1000).toFixed(0)} s`);
      nodeIds = (await Promise.all(urls.map(meshStatus))).map((s) => s.node.id);
    },
    { timeout: 10 * MINUTE },
  );
  after(
    async () => {
      closeAll(subscribers);
      await project?.destroy().catch((error: Error) => log(`compose down: ${error.message}`));
    },
    { timeout: 2 * MINUTE },
  );

  it('generated a mesh key readable by the relays only', async () => {
    const relay1 = await project.container('relay1');
    assert.equal((await docker('exec', relay1, 'stat', '-c', '%U %a', '/keys/swarm.key')).trim(), 'node 600');
    const logs = await project.compose('logs', 'mesh-key');
    assert.match(logs, /mesh key generated/);
    assert.doesNotMatch(logs, /[0-9a-f]{64}/, 'the key is never printed');
  });

  it('a publish on relay 1 reaches a live subscriber on relay 3', async () => {
    const sub = await subscribe(subscribers, project.wsUrls[2] as string, 'docker.live');
    const acks = await publish(urls[0] as string, 'docker.live', items('live', 5));
    published.push(...acks.map((a) => a.id));
    await waitForIds(sub, published, 'relay 3 to hear relay 1');
  });

  it('the dashboards answer', async () => {
    await assertDashboards(urls);
  });

  it('relay 2 killed and restarted: it rejoins and its history is whole', { timeout: 5 * MINUTE }, async () => {
    const relay2 = await project.container('relay2');
    await docker('kill', relay2);
    const during = [
      ...(await publish(urls[0] as string, 'docker.live', items('down-a', 10))),
      ...(await publish(urls[2] as string, 'docker.live', items('down-b', 10))),
    ];
    published.push(...during.map((a) => a.id));
    await docker('start', relay2);
    await project.waitHealthy([urls[1] as string]);
    await waitForMesh(urls);
    const onRelay2 = await history(urls[1] as string, 'docker.live');
    assert.deepEqual(idsOf(onRelay2), new Set(published), 'relay 2 has every message');
    assert.equal(onRelay2.length, published.length, 'and each once');
    // Live again: a subscriber on relay 2 hears a publish on relay 3.
    const sub = await subscribe(subscribers, project.wsUrls[1] as string, 'docker.live');
    const acks = await publish(urls[2] as string, 'docker.live', items('after', 3));
    published.push(...acks.map((a) => a.id));
    await waitForIds(
      sub,
      acks.map((a) => a.id),
      'relay 2 to hear relay 3 after its restart',
    );
  });

  it('compose down then up keeps the data in the volumes', { timeout: 10 * MINUTE }, async () => {
    closeAll(subscribers);
    await project.compose('down', '--timeout', '10');
    await project.up('--no-build');
    await project.waitHealthy();
    await waitForMesh(urls);
    assert.deepEqual(
      (await Promise.all(urls.map(meshStatus))).map((s) => s.node.id),
      nodeIds,
      'same node ids',
    );
    for (const url of urls) {
      assert.deepEqual(idsOf(await history(url, 'docker.live')), new Set(published), `${url} has every message`);
    }
    const logs = await project.compose('logs', 'mesh-key');
    assert.match(logs, /mesh key kept/);
    await assertDashboards(urls);
  });
});

describe(
  'docker-compose.embedded.yml: three full replicas, no Cassandra, a relay added',
  { timeout: 20 * MINUTE },
  () => {
    let project: ComposeProject;
    let urls: string[];
    const published: string[] = [];
    const subscribers: Collector[] = [];
    const meshKey = randomBytes(32).toString('hex');
    let upOutput = '';
    const folder = mkdtempSync(join(tmpdir(), 'anode-compose-'));

    before(
      async () => {
        project = await composeProject('docker-compose.embedded.yml', COMPOSE_IMAGE, { ANODE_MESH_KEY: meshKey });
        urls = project.urls;
        const t = Date.now();
        // As a user would start it: `up -d --build`, the image not there yet.
        upOutput = await project.up('--build');
        await project.waitHealthy();
        await waitForMesh(urls);
        log(`embedded cluster built, up and meshed in ${((Date.now() - t) / 1000).toFixed(0)} s`);
      },
      { timeout: 10 * MINUTE },
    );
    after(
      async () => {
        closeAll(subscribers);
        await project?.destroy().catch((error: Error) => log(`compose down: ${error.message}`));
        rmSync(folder, { recursive: true, force: true });
      },
      { timeout: 2 * MINUTE },
    );

    it('`up -d --build` built the image once, pulled nothing, and the relays ran it', async () => {
      const shown = upOutput.slice(-4_000);
      if (project.composeVersion === 1) {
        assert.deepEqual(upOutput.match(/^Building \S+/gm), ['Building mesh-key'], shown);
      } else {
        // BuildKit's progress: each step is `#<n> [<service> <stage> …]`; one image is named.
        const steps = new Set([...upOutput.matchAll(/^\s*#\d+ \[([\w-]+)[\] ]/gm)].map((m) => m[1]));
        assert.deepEqual([...steps], ['mesh-key'], shown);
        assert.equal(upOutput.match(/^\s*#\d+ naming to \S+/gm)?.length, 1, shown);
      }
      // The relays' image is the one mesh-key builds, never fetched (`pull_policy: never`).
      assert.doesNotMatch(upOutput, /Pulling|registry-1\.docker\.io/, shown);
      const imageOf = async (service: string) =>
        (await docker('inspect', '--format', '{{.Image}}', await project.container(service))).trim();
      const built = await imageOf('mesh-key');
      for (const relay of ['relay1', 'relay2', 'relay3']) assert.equal(await imageOf(relay), built, relay);
    });

    it('used the key from ANODE_MESH_KEY', async () => {
      assert.match(await project.compose('logs', 'mesh-key'), /mesh key written from ANODE_MESH_KEY/);
    });

    it('refuses a changed ANODE_MESH_KEY, leaving the relays and the stored key alone', async () => {
      const relays = await Promise.all(['relay1', 'relay2', 'relay3'].map((r) => project.container(r)));
      const refused = await project
        .composeWith({ ANODE_MESH_KEY: randomBytes(32).toString('hex') }, 'up', '-d', '--no-build')
        .then(
          () => 'up succeeded',
          (error: Error) => error.message,
        );
      // mesh-key exits 3; the step waiting for it (mesh-key-ok) fails `up`, before any relay.
      assert.match(
        refused,
        project.composeVersion === 1
          ? /ERROR: for mesh-key-ok .*exited with code 3/
          : /service "mesh-key" didn't complete successfully: exit 3/,
      );
      assert.match(await project.compose('logs', 'mesh-key'), /differs from the mesh key already stored/);
      const stored = await docker('exec', relays[0] as string, 'cat', '/keys/swarm.key');
      assert.equal(stored.split('\n')[2], meshKey, 'the stored key is the one the relays run with');
      assert.deepEqual(
        await Promise.all(['relay1', 'relay2', 'relay3'].map((r) => project.container(r))),
        relays,
        'no relay was recreated',
      );
      // Compose v2 stops the services depending on one it recreates (mesh-key, for the new key):
      // the relays depend on mesh-key-ok instead, so they keep running.
      for (const [i, id] of relays.entries()) {
        const state = (await docker('inspect', '--format', '{{.State.Status}}', id)).trim();
        assert.equal(state, 'running', `relay${i + 1} keeps running`);
      }
      await waitForMesh(urls);
    });

    it(
      'relay 2 killed and restarted catches up from its peers: every replica is whole',
      { timeout: 5 * MINUTE },
      async () => {
        const sub = await subscribe(subscribers, project.wsUrls[2] as string, 'docker.rep');
        published.push(...(await publish(urls[0] as string, 'docker.rep', items('before', 5))).map((a) => a.id));
        await waitForIds(sub, published, 'relay 3 to hear relay 1');
        const relay2 = await project.container('relay2');
        await docker('kill', relay2);
        published.push(...(await publish(urls[0] as string, 'docker.rep', items('down', 20))).map((a) => a.id));
        await docker('start', relay2);
        await project.waitHealthy([urls[1] as string]);
        await waitFor(
          'relay 2 to catch up',
          async () => idsOf(await history(urls[1] as string, 'docker.rep')).size === published.length,
          60_000,
          500,
        );
        for (const url of urls) {
          const messages = await history(url, 'docker.rep');
          assert.deepEqual(idsOf(messages), new Set(published), `${url} holds every message`);
          assert.equal(messages.length, published.length, `${url} holds each once`);
        }
      },
    );

    it(
      'a relay added as docs/deploy.md says (relay3 copied as relay4) joins, and keeps its node id and data across down/up',
      { timeout: 8 * MINUTE },
      async () => {
        const file = join(folder, 'docker-compose.embedded.yml');
        writeFileSync(file, withRelay(readFileSync(join(ROOT, 'docker-compose.embedded.yml'), 'utf8'), 4));
        project.useFile(file);
        const relay4 = project.url(4);
        const all = [...urls, relay4];
        const running = await Promise.all(['relay1', 'relay2', 'relay3'].map((r) => project.container(r)));
        await project.up('--no-build');
        await project.waitHealthy([relay4]);
        assert.deepEqual(
          await Promise.all(['relay1', 'relay2', 'relay3'].map((r) => project.container(r))),
          running,
          'the others keep running',
        );
        await waitForMesh(all);
        const sub = await subscribe(subscribers, relay4.replace(/^http/, 'ws'), 'docker.rep');
        const acks = await publish(urls[1] as string, 'docker.rep', items('added', 3));
        published.push(...acks.map((a) => a.id));
        await waitForIds(
          sub,
          acks.map((a) => a.id),
          'the added relay to hear relay 2',
        );
        await assertDashboards([relay4]);
        const holdsAll = (url: string) => async () => idsOf(await history(url, 'docker.rep')).size === published.length;
        await waitFor('relay 4 to catch up', holdsAll(relay4), 60_000, 500);
        const id = (await meshStatus(relay4)).node.id;

        closeAll(subscribers);
        await project.compose('down', '--timeout', '10');
        await project.up('--no-build');
        await project.waitHealthy(all);
        await waitForMesh(all);
        assert.equal((await meshStatus(relay4)).node.id, id, 'relay 4 kept its node id (its own /data volume)');
        for (const url of all) {
          const messages = await history(url, 'docker.rep');
          assert.deepEqual(idsOf(messages), new Set(published), `${url} holds every message`);
          assert.equal(messages.length, published.length, `${url} holds each once`);
        }
      },
    );
  },
);
