import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CONFIG_KEYS, ConfigError, loadConfig, SECRET_KEYS } from './config.ts';
import { unreadableFileHint } from './unreadable-file.ts';

describe('config', () => {
  it('has local defaults', () => {
    const config = loadConfig();
    assert.equal(config.port, 8080);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.store, 'embedded');
    assert.equal(config.jwt_secret, undefined);
  });

  it('takes flags over environment over file', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'relay.json');
    await writeFile(file, JSON.stringify({ port: 1000, data_dir: '/from/file', publish_rate: 7 }));
    const config = loadConfig({
      file,
      env: { ANODE_PORT: '2000', ANODE_DATA_DIR: '/from/env' },
      flags: { port: '3000' },
    });
    assert.equal(config.port, 3000);
    assert.equal(config.data_dir, '/from/env');
    assert.equal(config.publish_rate, 7);
  });

  it('refuses invalid values naming the key and where it came from', () => {
    assert.throws(() => loadConfig({ flags: { port: 'eighty' } }), /invalid config: port: .*--port/);
    assert.throws(() => loadConfig({ env: { ANODE_MAX_FRAME_BYTES: '-1' } }), /max_frame_bytes.*ANODE_MAX_FRAME_BYTES/);
    assert.throws(() => loadConfig({ env: { ANODE_JWT_SECRET: 'short' } }), /jwt_secret: must be at least 32/);
    assert.throws(() => loadConfig({ flags: { store: 'postgres' } }), /invalid config: store/);
  });

  it('refuses blank, null and boolean numbers, and timers longer than Node can wait', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'relay.json');
    // Coerced, these were 0 ("keep for ever", a random port) or 1.
    for (const [key, value] of [
      ['retention_max_messages', null],
      ['retention_max_age_ms', ''],
      ['publish_rate', true],
    ] as const) {
      await writeFile(file, JSON.stringify({ [key]: value }));
      assert.throws(
        () => loadConfig({ file }),
        new RegExp(`invalid config: ${key}: expects a whole number, got `),
        key,
      );
    }
    assert.throws(() => loadConfig({ env: { ANODE_PORT: ' ' } }), /invalid config: port/);
    assert.equal(loadConfig({ env: { ANODE_PORT: ' 9000 ' } }).port, 9000);
    for (const flag of [
      'client-ping-ms',
      'shutdown-grace-ms',
      'frame-timeout-ms',
      'http-keep-alive-ms',
      'cassandra-timeout-ms',
      'spool-drain-ms',
    ]) {
      assert.throws(() => loadConfig({ flags: { [flag]: '3000000000' } }), /at most 2147483647/, flag);
    }
    assert.equal(loadConfig({ flags: { 'client-ping-ms': '0' } }).client_ping_ms, 0, 'client pings off');
    // A history bucket's index row lives retention plus a bucket: past a year it nears TTLs Cassandra refuses.
    const year = String(366 * 24 * 3600 * 1000);
    assert.equal(loadConfig({ flags: { 'cassandra-bucket-ms': year } }).cassandra_bucket_ms, Number(year));
    assert.throws(() => loadConfig({ flags: { 'cassandra-bucket-ms': `${year}1` } }), /cassandra_bucket_ms: at most/);
  });

  it('refuses a mesh with auth on and neither key nor allow-list, unless mesh_open accepts it', () => {
    const auth = { 'jwt-secret': 'x'.repeat(32) };
    const refusal = /auth is on but the mesh has neither mesh_key nor mesh_allow.*--mesh-open/;
    assert.throws(() => loadConfig({ flags: { ...auth, listen: '/ip4/127.0.0.1/tcp/0' } }), refusal);
    assert.throws(() => loadConfig({ env: { ANODE_JWT_PUBLIC_KEYS: '/k.pem', ANODE_MESH: 'true' } }), refusal);
    assert.equal(loadConfig({ flags: { ...auth, mesh: 'true', 'mesh-open': 'true' } }).mesh_open, true);
    assert.ok(loadConfig({ flags: { ...auth, mesh: 'true', 'mesh-key': 'ab'.repeat(32) } }));
    assert.ok(loadConfig({ flags: { ...auth, mesh: 'true', 'mesh-key-file': '/swarm.key' } }));
    assert.ok(loadConfig({ flags: { ...auth, mesh: 'true', 'mesh-allow': `12D3KooW${'a'.repeat(44)}` } }));
    // No auth, or no mesh: nothing to bypass.
    assert.ok(loadConfig({ flags: { mesh: 'true' } }));
    assert.ok(loadConfig({ flags: auth }));
  });

  it('takes the listen addresses the mesh transports take, and refuses others naming the address', () => {
    for (const address of [
      '/ip4/0.0.0.0/tcp/4001',
      '/ip6/::/tcp/0',
      '/dns4/relay.example/tcp/4001',
      '/ip4/0.0.0.0/tcp/4002/ws',
      '/ip4/0.0.0.0/tcp/443/tls/sni/relay.example/ws',
      '/p2p-circuit',
      '/webrtc',
      // libp2p's parser ignores a trailing slash, and takes an IPv6 zone before the address.
      '/ip4/127.0.0.1/tcp/0/',
      '/ip4/0.0.0.0/tcp/4002/ws/',
      '/ip6zone/lo/ip6/::1/tcp/0',
    ]) {
      assert.deepEqual(loadConfig({ flags: { listen: address } }).listen, [address]);
    }
    const forms = /\/tcp\/.*\/ws.*\/p2p-circuit.*\/webrtc/;
    for (const address of ['/ip4/127.0.0.1/udp/5', '/ip4/1.2.3.4/udp/1/quic-v1', '/ip4/1.2.3.4/udp/1/webrtc-direct']) {
      assert.throws(
        () => loadConfig({ flags: { listen: `/ip4/127.0.0.1/tcp/0,${address}` } }),
        (error: Error) =>
          error instanceof ConfigError &&
          error.message.startsWith(`invalid config: listen: ${address} (from --listen): no transport`) &&
          forms.test(error.message),
      );
    }
    assert.throws(
      () => loadConfig({ env: { ANODE_LISTEN: '/ip4/999.1.1.1/tcp/1' } }),
      /listen: \/ip4\/999\.1\.1\.1\/tcp\/1 \(from ANODE_LISTEN\): 999\.1\.1\.1 is not an IPv4 address; the mesh listens on/,
    );
  });

  it('refuses a host that is neither an IP address nor a host name', () => {
    for (const host of ['127.0.0.1', '0.0.0.0', '::', '::1', 'localhost', 'relay-1.internal', 'my_host.local.']) {
      assert.equal(loadConfig({ flags: { host } }).host, host);
    }
    for (const host of ['999.1.1.1', '10.0.0', '[::1]', 'a b', 'relay/1']) {
      assert.throws(
        () => loadConfig({ flags: { host } }),
        new RegExp(
          `invalid config: host: ${host.replace(/[[\].]/g, '\\$&')} is neither an IP address nor a host name.*--host`,
        ),
      );
    }
  });

  it('refuses mesh_persist origin on the embedded store (nothing there would hold other relays’ messages)', () => {
    assert.throws(
      () => loadConfig({ flags: { 'mesh-persist': 'origin' } }),
      /mesh_persist origin needs .*store cassandra/,
    );
    assert.equal(loadConfig({ flags: { 'mesh-persist': 'origin', store: 'cassandra' } }).mesh_persist, 'origin');
    assert.equal(loadConfig({ flags: { 'mesh-persist': 'all' } }).mesh_persist, 'all');
  });

  it('reads secrets from the files ANODE_<KEY>_FILE name, never from both places', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const secret = join(dir, 'jwt');
    const admin = join(dir, 'admin');
    await writeFile(secret, 'a-secret-of-more-than-32-characters-here\n');
    await writeFile(admin, 'admin-token-in-a-file');
    const config = loadConfig({ env: { ANODE_JWT_SECRET_FILE: secret, ANODE_ADMIN_TOKEN_FILE: admin } });
    assert.equal(
      config.jwt_secret,
      'a-secret-of-more-than-32-characters-here',
      'the trailing newline is not part of it',
    );
    assert.equal(config.admin_token, 'admin-token-in-a-file');
    // A flag still wins over the environment.
    const flagged = loadConfig({
      env: { ANODE_JWT_SECRET_FILE: secret },
      flags: { 'jwt-secret': 'x'.repeat(40) },
    });
    assert.equal(flagged.jwt_secret, 'x'.repeat(40));
    assert.throws(
      () => loadConfig({ env: { ANODE_JWT_SECRET_FILE: secret, ANODE_JWT_SECRET: 'y'.repeat(40) } }),
      /both ANODE_JWT_SECRET and ANODE_JWT_SECRET_FILE are set/,
    );
    assert.throws(
      () => loadConfig({ env: { ANODE_JWT_SECRET_FILE: join(dir, 'missing') } }),
      /cannot read the file ANODE_JWT_SECRET_FILE names \(ENOENT\)/,
    );
    assert.throws(
      () => loadConfig({ env: { ANODE_JWT_SECRET_FILE: dir } }),
      /cannot read the file ANODE_JWT_SECRET_FILE names \(EISDIR\); it names a folder/,
    );
    // A file the relay's user may not read (not reproducible as root here): said so, not "a path".
    assert.match(unreadableFileHint('EACCES', 'ANODE_JWT_SECRET'), /relay's user cannot read it/);
    // The secret itself in the _FILE variable: the message does not print it.
    const misplaced = 'z'.repeat(48);
    assert.throws(
      () => loadConfig({ env: { ANODE_JWT_SECRET_FILE: misplaced } }),
      (error: Error) =>
        /the value itself goes in ANODE_JWT_SECRET/.test(error.message) && !error.message.includes(misplaced),
    );
    await writeFile(secret, 'short\n');
    assert.throws(
      () => loadConfig({ env: { ANODE_JWT_SECRET_FILE: secret } }),
      (error: Error) =>
        error instanceof ConfigError &&
        error.message.includes(`(from ANODE_JWT_SECRET_FILE ${secret})`) &&
        !error.message.includes('short'),
    );
    await writeFile(secret, '\n');
    assert.throws(() => loadConfig({ env: { ANODE_JWT_SECRET_FILE: secret } }), /ANODE_JWT_SECRET_FILE .* is empty/);
    for (const key of SECRET_KEYS) {
      assert.ok((CONFIG_KEYS as readonly string[]).includes(key), key);
      // ANODE_<KEY>_FILE must not be the variable of another key (mesh_key_file's is ANODE_MESH_KEY_FILE).
      assert.ok(!(CONFIG_KEYS as readonly string[]).includes(`${key}_file`), key);
    }
    // ANODE_MESH_KEY_FILE keeps naming a swarm.key file, as the compose files use it.
    const swarm = join(dir, 'swarm.key');
    await writeFile(swarm, `/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}\n`);
    const meshed = loadConfig({ env: { ANODE_MESH_KEY_FILE: swarm } });
    assert.equal(meshed.mesh_key_file, swarm);
    assert.equal(meshed.mesh_key, undefined);
  });

  it('refuses unknown keys and unreadable files', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ prot: 1 }));
    assert.throws(() => loadConfig({ file }), /unknown config key "prot"/);
    await writeFile(file, '{nope');
    assert.throws(() => loadConfig({ file }), ConfigError);
    assert.throws(() => loadConfig({ file: join(dir, 'missing.json') }), /cannot read config file/);
    assert.throws(() => loadConfig({ flags: { bogus: '1' } }), /unknown option --bogus/);
  });

  it('says a number key expects a whole number and shows what it got (not "received NaN")', async (t) => {
    assert.throws(
      () => loadConfig({ flags: { port: 'abc' } }),
      (error: Error) => {
        assert.equal(error.message, 'invalid config: port: expects a whole number, got "abc" (from --port)');
        return true;
      },
    );
    assert.throws(() => loadConfig({ env: { ANODE_PORT: '80.5' } }), /port: expects a whole number, got "80.5"/);
    const dir = await mkdtemp(join(tmpdir(), 'anode-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'relay.json');
    await writeFile(file, JSON.stringify({ publish_rate: 'fast' }));
    assert.throws(() => loadConfig({ file }), /publish_rate: expects a whole number, got "fast" \(from /);
  });

  it('suggests the nearest key for a typo instead of listing every key', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'anode-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'relay.json');
    for (const [typo, meant] of [
      ['prot', 'port'],
      ['mesh_keyfile', 'mesh_key_file'],
      ['jwt_secrt', 'jwt_secret'],
      ['retention_max_age', 'retention_max_age_ms'],
    ] as const) {
      await writeFile(file, JSON.stringify({ [typo]: 1 }));
      assert.throws(
        () => loadConfig({ file }),
        (error: Error) => {
          assert.match(error.message, new RegExp(`unknown config key "${typo}" in .*; did you mean ${meant}\\?`));
          // Not the ~80 known keys, which buried the one meant.
          assert.ok(!error.message.includes('known keys'), error.message);
          assert.ok(error.message.length < 200, error.message);
          return true;
        },
        typo,
      );
    }
    // Another key, not a slip of one: no suggestion (mesh_open would open the mesh to any node).
    for (const other of ['mesh_port', 'mesh_token', 'cert', 'cassandra_host', 'metrics_port', 'cassandra']) {
      await writeFile(file, JSON.stringify({ [other]: 1 }));
      assert.throws(
        () => loadConfig({ file }),
        (error: Error) => !error.message.includes('did you mean') && /docs\/configuration\.md/.test(error.message),
        other,
      );
    }
    await writeFile(file, JSON.stringify({ zzzzqqq: 1 }));
    assert.throws(
      () => loadConfig({ file }),
      /unknown config key "zzzzqqq" in .*; docs\/configuration.md lists every key/,
    );
    assert.throws(
      () => loadConfig({ flags: { 'dat-dir': 'x' } }),
      /unknown option --dat-dir; did you mean --data-dir\?/,
    );
  });

  it('derives every inner limit from max_message_bytes and refuses one below it', () => {
    const config = loadConfig({ flags: { 'max-message-bytes': String(2 * 1024 * 1024) } });
    for (const key of ['max_frame_bytes', 'max_body_bytes', 'mesh_max_message_bytes'] as const) {
      assert.ok(config[key] >= config.max_message_bytes + 4096, key);
    }
    assert.equal(loadConfig().max_message_bytes, 1024 * 1024);
    for (const flag of ['max-frame-bytes', 'max-body-bytes', 'mesh-max-message-bytes']) {
      assert.throws(
        () => loadConfig({ flags: { 'max-message-bytes': '100000', [flag]: '100000' } }),
        /is below max_message_bytes/,
        flag,
      );
    }
    assert.throws(() => loadConfig({ flags: { 'max-message-bytes': String(64 * 1024 * 1024) } }), /max_message_bytes/);
  });
});
