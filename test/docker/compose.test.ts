// The deploy artefacts, built and run for real: the relay image (Dockerfile) and both compose
// shapes (docker-compose.yml: three relays in a private mesh sharing Cassandra;
// docker-compose.embedded.yml: three full replicas, plus scaling out).
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
import { after, before, describe, it } from 'node:test';
import type { Envelope } from '@anode/shared';
import { history } from '../helpers/relay.ts';
import { type Collector, collect, meshStatus, publish, waitFor } from '../helpers/mesh.ts';
import { buildBaseImages } from './base-images.ts';
import {
  buildRelayImage,
  type ComposeProject,
  composeProject,
  docker,
  imageSizeBytes,
  requireDocker,
} from './compose.ts';

const IMAGE = `anode/relay:test-${process.pid}-${randomBytes(3).toString('hex')}`;
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
    await docker('image', 'rm', '-f', IMAGE).catch((error: Error) => log(`image cleanup: ${error.message}`));
    await docker('image', 'prune', '-f', '--filter', 'label=anode.stage=build').catch(() => {});
    log(`docker tests took ${((Date.now() - started) / 1000).toFixed(0)} s in all`);
  },
  // Removing the images takes over a minute on a loaded machine.
  { timeout: 10 * MINUTE },
);

describe('docker image', { timeout: 5 * MINUTE }, () => {
  it('runs as the node user, with every setting from ANODE_* variables, and answers its healthcheck', async () => {
    const name = `anodetest${process.pid}${randomBytes(3).toString('hex')}`;
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
      await project.compose('up', '-d', '--no-build');
      await project.waitHealthy();
      await waitForMesh(urls);
      log(`cassandra cluster up and meshed in ${((Date.now() - t) / 1000).toFixed(0)} s`);
      nodeIds = (await Promise.all(urls.map(meshStatus))).map((s) => s.node.id);
    },
    { timeout: 10 * MINUTE },
  );
  after(
    async () => {
      for (const s of subscribers) s.client.close();
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
    const sub = await collect(project.wsUrls[2] as string, 'docker.live');
    subscribers.push(sub);
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
    const sub = await collect(project.wsUrls[1] as string, 'docker.live');
    subscribers.push(sub);
    const acks = await publish(urls[2] as string, 'docker.live', items('after', 3));
    published.push(...acks.map((a) => a.id));
    await waitForIds(
      sub,
      acks.map((a) => a.id),
      'relay 2 to hear relay 3 after its restart',
    );
  });

  it('compose down then up keeps the data in the volumes', { timeout: 10 * MINUTE }, async () => {
    for (const s of subscribers.splice(0)) s.client.close();
    await project.compose('down', '--timeout', '10');
    await project.compose('up', '-d', '--no-build');
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
  'docker-compose.embedded.yml: three full replicas, no Cassandra, scaling out',
  { timeout: 20 * MINUTE },
  () => {
    let project: ComposeProject;
    let urls: string[];
    const published: string[] = [];
    const subscribers: Collector[] = [];

    before(
      async () => {
        project = await composeProject('docker-compose.embedded.yml', IMAGE, {
          ANODE_MESH_KEY: randomBytes(32).toString('hex'),
        });
        urls = project.urls;
        const t = Date.now();
        await project.compose('up', '-d', '--no-build');
        await project.waitHealthy();
        await waitForMesh(urls);
        log(`embedded cluster up and meshed in ${((Date.now() - t) / 1000).toFixed(0)} s`);
      },
      { timeout: 10 * MINUTE },
    );
    after(
      async () => {
        for (const s of subscribers) s.client.close();
        await project?.destroy().catch((error: Error) => log(`compose down: ${error.message}`));
      },
      { timeout: 2 * MINUTE },
    );

    it('used the key from ANODE_MESH_KEY', async () => {
      assert.match(await project.compose('logs', 'mesh-key'), /mesh key written from ANODE_MESH_KEY/);
    });

    it(
      'relay 2 killed and restarted catches up from its peers: every replica is whole',
      { timeout: 5 * MINUTE },
      async () => {
        const sub = await collect(project.wsUrls[2] as string, 'docker.rep');
        subscribers.push(sub);
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

    it('scales out: an added relay joins the mesh, and hears live publishes', { timeout: 5 * MINUTE }, async () => {
      await project.compose('--profile', 'scale', 'up', '-d', '--no-build', '--scale', 'relay-extra=1');
      const extra = await project.publishedUrl('relay-extra', 1);
      await project.waitHealthy([extra]);
      await waitForMesh([...urls, extra]);
      const sub = await collect(extra.replace(/^http/, 'ws'), 'docker.rep');
      subscribers.push(sub);
      const acks = await publish(urls[1] as string, 'docker.rep', items('scaled', 3));
      published.push(...acks.map((a) => a.id));
      await waitForIds(
        sub,
        acks.map((a) => a.id),
        'the added relay to hear relay 2',
      );
      await assertDashboards([extra]);
    });
  },
);
