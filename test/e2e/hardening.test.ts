import assert from 'node:assert/strict';
import { once } from 'node:events';
import { generateKeyPairSync, sign } from 'node:crypto';
import { chmod, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { Agent, createServer, type IncomingHttpHeaders, request as httpRequest, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLOSE_CODES, CLOSE_MESSAGE_TOO_BIG, signToken } from '@anode/shared';
import { WebSocketServer } from 'ws';
import { type RelayProcess, spawnRelay, startRelay, type TestRelay, tempDir } from '../helpers/relay.ts';
import { openSocket } from '../helpers/ws.ts';
import { type EdgeRuntime, startEdge } from '../helpers/edge.ts';

/**
 * Issue 12, part C, against real relays: status and metrics guarded and redacted, caps per
 * token and address, unfinished frames and slow handshakes cut off, source answers bounded, the
 * dashboard tail bounded, secret files owner-only.
 */
const JWT_SECRET = 'hardening-test-jwt-secret-0123456789abcdef';
const ADMIN = 'hardening-admin-token-0123456789';
const METRICS = 'hardening-metrics-token-0123456789';
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function until<T>(what: string, get: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A hostile upstream: a 6 MB answer without Content-Length, a non-JSON answer with a secret in it, a 3 MB frame. */
async function hostileUpstream() {
  const server: Server = createServer((request, response) => {
    if (request.url?.startsWith('/huge')) {
      response.writeHead(200, { 'content-type': 'application/json' });
      let sent = 0;
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (sent < 6 * 1024 * 1024) {
          sent += chunk.length;
          if (!response.write(chunk)) return void response.once('drain', pump);
        }
        response.end('{}');
      };
      response.on('error', () => {});
      return pump();
    }
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end('SECRET-UPSTREAM-BYTES, not JSON');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.send(JSON.stringify({ blob: 'b'.repeat(3 * 1024 * 1024) })));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: () => {
      for (const ws of wss.clients) ws.terminate();
      server.closeAllConnections();
      server.close();
    },
  };
}

describe('status, metrics and logs with auth on', () => {
  let relay: RelayProcess;
  let upstream: Awaited<ReturnType<typeof hostileUpstream>>;
  let dataDir: string;
  before(async () => {
    upstream = await hostileUpstream();
    dataDir = await tempDir('anode-hardening-');
    const base = `127.0.0.1:${upstream.port}`;
    const sources = [
      {
        name: 'creds',
        kind: 'http',
        topic: 'src.creds',
        url: `http://${base}/garbage?api_key=KEY123SECRET&page=2`,
        headers: { authorization: 'Bearer HEADER-SECRET-TOKEN' },
        interval_ms: 200,
        backoff_min_ms: 200,
        backoff_max_ms: 400,
      },
      {
        name: 'userinfo',
        kind: 'http',
        topic: 'src.userinfo',
        url: `http://feeduser:hunter2pass@${base}/garbage`,
        interval_ms: 200,
      },
      {
        name: 'huge',
        kind: 'http',
        topic: 'src.huge',
        url: `http://${base}/huge`,
        interval_ms: 200,
        max_bytes: 1_000_000,
      },
      { name: 'bigframe', kind: 'websocket', topic: 'src.frame', url: `ws://${base}/ws`, max_bytes: 1_000_000 },
    ];
    relay = await spawnRelay([
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--log-level',
      'debug',
      '--jwt-secret',
      JWT_SECRET,
      '--admin-token',
      ADMIN,
      '--metrics-token',
      METRICS,
      '--sources',
      JSON.stringify(sources),
    ]);
  });
  after(async () => {
    relay?.child.kill('SIGTERM');
    await relay?.exited;
    upstream?.close();
  });

  type SourceStatus = { name: string; state: string; last_error: { message: string; sample?: string } | null };
  const statusAs = async (token?: string) => {
    const response = await fetch(`${relay.url}/v1/status`, { headers: token ? bearer(token) : {} });
    return {
      code: response.status,
      body: (await response.json()) as { sources?: SourceStatus[]; error?: { code: string } },
    };
  };
  const failing = (token: string, name: string) =>
    until(`source ${name} to fail`, async () => {
      const source = (await statusAs(token)).body.sources?.find((s) => s.name === name);
      return source?.state === 'failing' && source.last_error ? source : undefined;
    });

  it('needs the admin or the metrics token for /v1/status and /metrics; /healthz stays open', async () => {
    const anonymous = await statusAs();
    assert.equal(anonymous.code, 401);
    assert.equal(anonymous.body.error?.code, 'unauthorized');
    const subscriber = await signToken(JWT_SECRET, { sub: ['>'], pub: ['>'] });
    assert.equal((await statusAs(subscriber)).code, 401, 'a client token is not a status token');
    assert.equal((await statusAs(METRICS)).code, 200);
    assert.equal((await statusAs(ADMIN)).code, 200);
    assert.equal((await fetch(`${relay.url}/metrics`)).status, 401);
    const metrics = await fetch(`${relay.url}/metrics`, { headers: bearer(METRICS) });
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /anode_/);
    assert.equal((await fetch(`${relay.url}/healthz`)).status, 200);
  });

  it('shows source URLs without credentials, and upstream bytes to the admin only; logs leak neither', async () => {
    const asReader = await failing(METRICS, 'creds');
    assert.match(
      asReader.last_error?.message ?? '',
      /invalid JSON from http:\/\/127\.0\.0\.1:\d+\/garbage\?api_key=\*\*\*&page=2/,
    );
    const userinfo = await failing(ADMIN, 'userinfo');
    assert.match(userinfo.last_error?.message ?? '', /http:\/\/\*\*\*@127\.0\.0\.1:\d+\/garbage/);
    assert.equal(asReader.last_error?.sample, undefined, 'upstream bytes are for the admin only');
    const asAdmin = await failing(ADMIN, 'creds');
    assert.match(asAdmin.last_error?.sample ?? '', /SECRET-UPSTREAM-BYTES/);
    const everything = JSON.stringify((await statusAs(ADMIN)).body);
    for (const secret of ['hunter2pass', 'KEY123SECRET', 'HEADER-SECRET-TOKEN', 'feeduser']) {
      assert.ok(!everything.includes(secret), `${secret} in /v1/status`);
    }
    const logs = relay.output.join('');
    assert.match(logs, /source attempt failed/, 'the failures were logged');
    for (const secret of [
      'hunter2pass',
      'KEY123SECRET',
      'HEADER-SECRET-TOKEN',
      'SECRET-UPSTREAM-BYTES',
      ADMIN,
      METRICS,
    ]) {
      assert.ok(!logs.includes(secret), `${secret} in the logs`);
    }
  });

  it('abandons an http answer and a websocket frame past the source max_bytes; the relay stays small', async () => {
    const huge = await failing(ADMIN, 'huge');
    assert.match(huge.last_error?.message ?? '', /exceeds max_bytes \(1000000 bytes\)/);
    const frame = await failing(ADMIN, 'bigframe');
    assert.match(frame.last_error?.message ?? '', /exceeds max_bytes \(1000000 bytes\)/);
    assert.equal((await fetch(`${relay.url}/healthz`)).status, 200);
  });

  it('keeps the dashboard stream working with the admin token', async () => {
    const response = await fetch(`${relay.url}/v1/status/stream`, { headers: bearer(ADMIN) });
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    let text = '';
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    assert.match(text, /event: status/);
    assert.match(text, /"node":\{"id":"/, 'the stream carries the status it reads with the admin token');
  });

  it('creates the data folder 0700 and its secret files 0600, and tightens them on the next start', async () => {
    const mode = async (path: string) => (await stat(path)).mode & 0o777;
    assert.equal(await mode(dataDir), 0o700);
    for (const file of ['node-id', 'messages.sqlite', 'clock-lease', 'lock'])
      assert.equal(await mode(join(dataDir, file)), 0o600, file);
    // An admin change is journalled in sources.log (folded into sources.json as it grows).
    const changed = await fetch(`${relay.url}/v1/admin/sources/creds/pause`, {
      method: 'POST',
      headers: bearer(ADMIN),
    });
    assert.ok(changed.status < 300, `pause answered ${changed.status}`);
    await until('sources.log', async () => ((await readdir(dataDir)).includes('sources.log') ? true : undefined));
    assert.equal(await mode(join(dataDir, 'sources.log')), 0o600);
    for (const file of await readdir(dataDir))
      if (file.startsWith('messages.sqlite')) assert.equal(await mode(join(dataDir, file)), 0o600, file);

    relay.child.kill('SIGTERM');
    await relay.exited;
    await chmod(dataDir, 0o755);
    for (const file of ['node-id', 'sources.log', 'messages.sqlite', 'clock-lease'])
      await chmod(join(dataDir, file), 0o644);
    relay = await spawnRelay(['--port', '0', '--data-dir', dataDir, '--log-level', 'info']);
    assert.equal(await mode(dataDir), 0o700);
    for (const file of ['node-id', 'sources.log', 'messages.sqlite', 'clock-lease'])
      assert.equal(await mode(join(dataDir, file)), 0o600, file);
  });
});

describe('JWT public-key files', () => {
  /** An EdDSA token signed with Node's crypto (no JWT library on this side). */
  const eddsaToken = (privateKey: ReturnType<typeof generateKeyPairSync>['privateKey'], claims: object) => {
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const body = `${part({ alg: 'EdDSA', typ: 'JWT' })}.${part(claims)}`;
    return `${body}.${sign(null, Buffer.from(body), privateKey).toString('base64url')}`;
  };

  it('verifies tokens with an Ed25519 key from a file, and refuses to start naming a file that holds none', async () => {
    const dir = await tempDir();
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const good = join(dir, 'good.pem');
    await writeFile(good, publicKey.export({ type: 'spki', format: 'pem' }));
    const relay = await startRelay({ 'jwt-public-keys': good });
    try {
      const exp = Math.floor(Date.now() / 1000) + 60;
      const token = eddsaToken(privateKey, { sub: 'k1', exp, anode: { pub: ['keys.>'] } });
      const post = (bearer: string) =>
        fetch(`${relay.url}/v1/topics/keys.t/messages`, {
          method: 'POST',
          headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
          body: JSON.stringify({ data: 1 }),
        });
      assert.equal((await post(token)).status, 202);
      const other = generateKeyPairSync('ed25519').privateKey;
      assert.equal((await post(eddsaToken(other, { sub: 'k1', exp, anode: { pub: ['keys.>'] } }))).status, 401);
    } finally {
      await relay.stop();
    }
    const bad = join(dir, 'not-a-key.pem');
    await writeFile(bad, 'hello');
    await assert.rejects(startRelay({ 'jwt-public-keys': `${good},${bad}` }), /jwt_public_keys: .*not-a-key\.pem/);
    await assert.rejects(startRelay({ 'jwt-public-keys': join(dir, 'missing.pem') }), /missing\.pem: ENOENT/);
  });
});

describe('connection caps', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({
      'jwt-secret': JWT_SECRET,
      'max-connections-per-token': '2',
      'max-connections-per-address': '4',
    });
  });
  after(() => relay.stop());

  const refusal = (url: string) =>
    openSocket(url).then(
      (socket) => {
        socket.close();
        return undefined;
      },
      (error: { status?: number; body?: string }) => error,
    );

  it('refuses a token past its connections, and an address past its own, with 429 limit_reached', async () => {
    const alice = await signToken(JWT_SECRET, { sub: ['>'], subject: 'alice' });
    const bob = await signToken(JWT_SECRET, { sub: ['>'], subject: 'bob' });
    const open = [
      await openSocket(`${relay.wsUrl}/v1/ws?token=${alice}`),
      await openSocket(`${relay.wsUrl}/v1/ws?token=${alice}`),
    ];
    const third = await refusal(`${relay.wsUrl}/v1/ws?token=${alice}`);
    assert.equal(third?.status, 429);
    assert.match(third?.body ?? '', /"code":"limit_reached".*per token/);
    // Another token for the same subject counts against the same limit.
    const aliceAgain = await signToken(JWT_SECRET, { sub: ['a.>'], subject: 'alice' });
    assert.notEqual(aliceAgain, alice);
    const fourth = await refusal(`${relay.wsUrl}/v1/ws?token=${aliceAgain}`);
    assert.equal(fourth?.status, 429, 'a second token of the same subject got past the per-subject limit');
    open.push(
      await openSocket(`${relay.wsUrl}/v1/ws?token=${bob}`),
      await openSocket(`${relay.wsUrl}/v1/ws?token=${bob}`),
    );
    const fifth = await refusal(`${relay.wsUrl}/v1/topics/a.b/ws?token=${bob}`);
    assert.equal(fifth?.status, 429);
    assert.match(fifth?.body ?? '', /per client address/);
    open[0]?.close();
    await open[0]?.closed;
    await until('a freed slot', async () =>
      (await refusal(`${relay.wsUrl}/v1/ws?token=${alice}`)) ? undefined : true,
    );
    for (const socket of open) socket.close();
  });

  it('closes a TCP connection past max_connections_per_address + 64 from one address, HTTP ones too', async () => {
    const { port } = new URL(relay.url);
    /** A kept-alive connection that got its answer, or undefined when the relay closed it unanswered. */
    const held = (): Promise<Socket | undefined> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1');
        let answer = '';
        socket.on('error', () => resolve(undefined));
        socket.on('data', (chunk) => {
          answer += String(chunk);
          if (answer.includes('\r\n\r\n')) {
            if (answer.startsWith('HTTP/1.1 200')) resolve(socket);
            else reject(new Error(answer));
          }
        });
        socket.on('close', () => resolve(undefined));
        socket.write('GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n');
      });
    const open: Socket[] = [];
    try {
      for (let i = 0; i < 4 + 64; i++) {
        const socket = await held();
        assert.ok(socket, `connection ${i + 1} was refused`);
        open.push(socket);
      }
      assert.equal(await held(), undefined, 'the 69th connection was served');
      open.pop()?.destroy();
      await until('a freed connection slot', async () => {
        const socket = await held();
        if (socket) open.push(socket);
        return socket ? true : undefined;
      });
    } finally {
      for (const socket of open) socket.destroy();
    }
  });

  it('lets a refused upgrade go, so a client that keeps its side open holds no slot', async () => {
    const { port } = new URL(relay.url);
    /** An upgrade with a bad token: what the relay answered ('' if it closed unanswered). */
    const refused = (): Promise<{ answer: string; socket: Socket }> =>
      new Promise((resolve) => {
        // allowHalfOpen: the client never sends its FIN, as the review's client did.
        const socket = connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
        let answer = '';
        socket.on('error', () => resolve({ answer, socket }));
        socket.on('close', () => resolve({ answer, socket }));
        // The relay's FIN, after its answer.
        socket.on('end', () => resolve({ answer, socket }));
        socket.on('data', (chunk) => (answer += String(chunk)));
        socket.write(
          'GET /v1/ws?token=bad HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        );
      });
    // The test before filled this address's connections: wait until the relay has let them go.
    await until('the connections of the test before let go', async () => {
      const { answer, socket } = await refused();
      socket.destroy();
      return answer ? true : undefined;
    });
    const sockets: Socket[] = [];
    try {
      // Twice what the address may hold (4 + 64): held half-open, the ones past it were closed
      // unanswered, and the address was shut out until the client closed them.
      for (let i = 0; i < 2 * (4 + 64); i++) {
        const { answer, socket } = await refused();
        sockets.push(socket);
        assert.match(answer, /^HTTP\/1.1 401 unauthorized/, `upgrade ${i + 1} of a client holding the others`);
      }
      const healthy = await fetch(`${relay.url}/healthz`);
      assert.equal(healthy.status, 200);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});

describe('a clock lease that cannot be written', () => {
  it('makes /healthz say not ok until a lease write succeeds again', async () => {
    const relay = await startRelay();
    try {
      // Fault injection: the lease's temporary files are folders, so writing them fails as a
      // full disk would (the renewal is due within LEASE_MS / 2).
      const blocked = ['clock-lease.renewal', 'clock-lease.tmp'].map((name) => join(relay.dataDir, name));
      for (const path of blocked) await mkdir(path);
      await until('healthz to say not ok', async () =>
        (await fetch(`${relay.url}/healthz`)).status === 503 ? true : undefined,
      );
      for (const path of blocked) await rm(path, { recursive: true });
      await until('healthz to say ok again', async () =>
        (await fetch(`${relay.url}/healthz`)).status === 200 ? true : undefined,
      );
    } finally {
      await relay.stop();
    }
  });
});

describe('client liveness', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'client-ping-ms': '200', 'max-connections-per-address': '2' });
  });
  after(() => relay.stop());

  it('drops a client that stops answering pings, freeing its slot; keeps one that answers', async () => {
    const { WebSocket } = await import('ws');
    // A client gone without a close: its socket is open, but it never answers a ping.
    const ghost = new WebSocket(`${relay.wsUrl}/v1/ws`, { autoPong: false });
    await once(ghost, 'open');
    const alive = await openSocket(`${relay.wsUrl}/v1/ws`);
    alive.send({ op: 'sub', topic: 'live.a', ref: 's' });
    const [code] = (await Promise.race([
      once(ghost, 'close'),
      new Promise((_, reject) => setTimeout(() => reject(new Error('ghost not dropped within 5 s')), 5_000)),
    ])) as [number];
    assert.equal(code, 1006, 'dropped without a close handshake');
    // Its slot under the per-address cap is free again; the answering client is still served.
    const third = await openSocket(`${relay.wsUrl}/v1/ws`);
    await new Promise((r) => setTimeout(r, 600));
    alive.send({ op: 'ping', ref: 'still-there' });
    assert.equal((await alive.next((f) => 'ref' in f && f.ref === 'still-there')).op, 'pong');
    const metrics = await (await fetch(`${relay.url}/metrics`)).text();
    assert.match(metrics, /anode_server_disconnects_total\{reason="ping_timeout"\} [1-9]/);
    third.close();
    alive.close();
  });
});

describe('unfinished frames and slow handshakes', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'max-message-bytes': '90000', 'max-frame-bytes': '100000', 'frame-timeout-ms': '600' });
  });
  after(() => relay.stop());

  const raw = async (): Promise<Socket> => {
    const socket = connect(Number(new URL(relay.url).port), '127.0.0.1');
    await once(socket, 'connect');
    return socket;
  };
  const upgrade =
    'GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

  it('closes a connection that leaves a frame unfinished with 4003, and keeps a slow but steady one', async () => {
    const socket = await raw();
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', () => {}); // a reset after the close frame is the relay's to send
    const gone = new Promise((resolve) => socket.once('close', resolve)); // events.once rejects on ECONNRESET
    socket.write(upgrade);
    await until('the upgrade', () => (Buffer.concat(received).includes('101 Switching') ? true : undefined));
    // A masked text frame announcing 60,000 bytes; 1,000 sent, then nothing.
    socket.write(Buffer.concat([Buffer.from([0x81, 0xfe, 0xea, 0x60, 1, 2, 3, 4]), Buffer.alloc(1_000, 0x20)]));
    const started = Date.now();
    await gone;
    const all = Buffer.concat(received);
    const close = all.indexOf(Buffer.from([0x88]), all.indexOf('\r\n\r\n') + 4);
    assert.ok(close > 0, 'a close frame was sent');
    assert.equal(all.readUInt16BE(close + 2), CLOSE_CODES.frame_timeout);
    assert.ok(Date.now() - started < 5_000, 'closed within a few frame timeouts');

    const steady = await openSocket(`${relay.wsUrl}/v1/ws`);
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 300));
      steady.send({ op: 'ping', ref: `p${i}` });
      assert.equal((await steady.next((f) => f.op === 'pong')).op, 'pong');
    }
    steady.close();
  });

  it('closes a fragmented message left unfinished with 4003, even while the client sends pings between fragments', async () => {
    const socket = await raw();
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    // The relay closes while pings are still on their way: the reset that follows is expected. A
    // CI run once failed here because events.once(socket, 'close') rejected on that ECONNRESET,
    // and the ping timer, never cleared, then held the test file open until the run's timeout.
    socket.on('error', () => {});
    const gone = new Promise<true>((resolve) => socket.once('close', () => resolve(true)));
    socket.write(upgrade);
    await until('the upgrade', () => (Buffer.concat(received).includes('101 Switching') ? true : undefined));
    // A text message's first fragment (FIN clear, 50,000 bytes), then only pings (FIN, opcode 9).
    const first = Buffer.concat([Buffer.from([0x01, 0xfe, 0xc3, 0x50, 1, 2, 3, 4]), Buffer.alloc(50_000, 0x20)]);
    socket.write(first);
    const ping = Buffer.from([0x89, 0x80, 1, 2, 3, 4]);
    const pinging = setInterval(() => socket.writable && socket.write(ping), 200);
    const started = Date.now();
    let closed: boolean;
    try {
      closed = await Promise.race([gone, new Promise<false>((r) => setTimeout(() => r(false), 5_000))]);
    } finally {
      clearInterval(pinging);
      socket.destroy();
    }
    assert.ok(closed, 'the relay kept holding the unfinished message for 5 s (frame timeout 600 ms)');
    const all = Buffer.concat(received);
    const close = all.indexOf(Buffer.from([0x88]), all.indexOf('\r\n\r\n') + 4);
    assert.ok(close > 0, 'a close frame was sent');
    assert.equal(all.readUInt16BE(close + 2), CLOSE_CODES.frame_timeout);
    assert.ok(Date.now() - started < 5_000);
  });

  it('closes a frame above twice max_frame_bytes with 1009 before reading it, and answers one below with too_large', async () => {
    const socket = await openSocket(`${relay.wsUrl}/v1/ws`);
    socket.sendRaw(JSON.stringify({ op: 'pub', topic: 'a.b', data: 'x'.repeat(150_000) }));
    const tooLarge = await socket.next((f) => f.op === 'err');
    assert.match(tooLarge.op === 'err' ? tooLarge.message : '', /exceeds max_frame_bytes \(\d+\); .*max_message_bytes/);
    socket.sendRaw(Buffer.alloc(250_000, 0x20).toString());
    const closed = await socket.closed;
    assert.equal(closed.code, CLOSE_MESSAGE_TOO_BIG);
    assert.match(closed.reason, /^frame over \d+ bytes, far past max_frame_bytes \(\d+\): not read$/);
    assert.ok(Buffer.byteLength(closed.reason) <= 123, 'a close reason fits its 123 bytes');
  });

  it('answers a frame refused before parsing whose ref is no JSON string, and stays up', async () => {
    // A review: `"ref":"\\q"` made the search for the ref throw in the socket's listener, and
    // the relay process exited on a 2 KB frame from anyone who could open a socket.
    const socket = await openSocket(`${relay.wsUrl}/v1/ws`);
    const deep = `${'['.repeat(1_002)}${']'.repeat(1_002)}`;
    socket.sendRaw(`{"ref":"\\q","op":"pub","topic":"a.b","data":${deep}}`);
    const tooDeep = await socket.next((f) => f.op === 'err');
    assert.equal(tooDeep.op === 'err' && tooDeep.code, 'bad_frame');
    socket.sendRaw(`{"ref":"\\q","op":"pub","topic":"a.b","data":"${'x'.repeat(150_000)}"}`);
    const tooLarge = await socket.next((f) => f.op === 'err' && f.code === 'too_large');
    assert.equal(tooLarge.op === 'err' && tooLarge.ref, undefined);
    socket.sendRaw(JSON.stringify({ op: 'pub', topic: 'a.b', data: 1, ref: 'after' }));
    const ack = await socket.next((f) => f.op === 'ack');
    assert.equal(ack.op === 'ack' && ack.ref, 'after');
    assert.equal((await fetch(`${relay.url}/healthz`)).status, 200);
    socket.close();
  });

  it('answers a text frame that is not UTF-8 with the ref it holds, wherever it stands', async () => {
    const socket = await openSocket(`${relay.wsUrl}/v1/ws`);
    const head = Buffer.from(`{"op":"pub","topic":"a.b","data":"${'x'.repeat(5000)}`);
    socket.sendRaw(Buffer.concat([head, Buffer.from([0xff]), Buffer.from('","ref":"late-ref"}')]), false);
    const error = await socket.next((f) => f.op === 'err');
    assert.deepEqual(error, {
      op: 'err',
      code: 'bad_frame',
      message: 'text frame is not valid UTF-8',
      ref: 'late-ref',
    });
    socket.close();
  });

  it('drops a client that trickles its handshake headers', async () => {
    const socket = await raw();
    socket.on('error', () => {}); // the relay hangs up mid-write
    socket.write('GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const started = Date.now();
    const timer = setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), 100);
    await new Promise((resolve) => socket.once('close', resolve)); // events.once would throw on EPIPE
    clearInterval(timer);
    assert.ok(Date.now() - started < 10_000, `dropped after ${Date.now() - started} ms`);
  });
});

describe('the dashboard tail', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay({ 'publish-rate': '100000', 'publish-burst': '100000' });
  });
  after(() => relay.stop());

  it('drops messages a reader does not take, says how many once it reads again, and keeps the relay up', async () => {
    const socket = connect(Number(new URL(relay.url).port), '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET /v1/status/tail?topic=tail.big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    await until('the tail to open', () => (text.includes('event: subscribed') ? true : undefined));
    socket.pause(); // a reader that stops reading
    const blob = 'q'.repeat(200_000);
    for (let second = 0; second < 5; second++) {
      const started = Date.now();
      const body = JSON.stringify(Array.from({ length: 15 }, () => ({ data: blob })));
      const response = await fetch(`${relay.url}/v1/topics/tail.big/messages`, { method: 'POST', body });
      assert.equal(response.status, 202);
      await new Promise((r) => setTimeout(r, Math.max(0, 1_000 - (Date.now() - started))));
    }
    socket.resume();
    await new Promise((r) => setTimeout(r, 1_000)); // the reader catches up
    const more = await fetch(`${relay.url}/v1/topics/tail.big/messages`, { method: 'POST', body: '{"data":"after"}' });
    assert.equal(more.status, 202);
    await until('a dropped notice', () => (/event: dropped\ndata: \{"dropped":\d+\}/.test(text) ? true : undefined));
    socket.destroy();
    assert.equal((await fetch(`${relay.url}/healthz`)).status, 200);
  });
});

describe('WebSocket topic URLs', () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startRelay();
  });
  after(() => relay.stop());

  it('answers a malformed % escape with 400 bad_topic, not 500, as the HTTP route does', async () => {
    const error = await openSocket(`${relay.wsUrl}/v1/topics/a%E0%A4%A/ws`).then(
      () => undefined,
      (e: { status?: number; body?: string }) => e,
    );
    assert.equal(error?.status, 400);
    const http = await fetch(`${relay.url}/v1/topics/a%E0%A4%A/messages`);
    assert.equal(http.status, 400);
    const code = (body: string) => (JSON.parse(body) as { error: { code: string } }).error.code;
    assert.equal(code(error?.body ?? '{}'), 'bad_topic');
    assert.equal(code(await http.text()), 'bad_topic');
  });

  it('refuses a bad topic before the token, as HTTP does: 400 bad_topic with or without one', async () => {
    const authed = await startRelay({ 'jwt-secret': 'hardening-topic-order-secret-0123456789' });
    try {
      const refusal = (url: string) =>
        openSocket(url).then(
          () => undefined,
          (e: { status?: number; body?: string }) => e,
        );
      const ws = await refusal(`${authed.wsUrl}/v1/topics/bad..t/ws`);
      assert.equal(ws?.status, 400);
      assert.match(ws?.body ?? '', /bad_topic/);
      const http = await fetch(`${authed.url}/v1/topics/bad..t/messages`, { method: 'POST', body: '{"data":1}' });
      assert.equal(http.status, 400);
      // A good topic without a token is still 401, a bad `after` too (checked after the rights,
      // as over HTTP and at the edge).
      assert.equal((await refusal(`${authed.wsUrl}/v1/topics/good.t/ws`))?.status, 401);
      assert.equal((await refusal(`${authed.wsUrl}/v1/topics/good.t/ws?after=nope`))?.status, 401);
    } finally {
      await authed.stop();
    }
  });

  it('takes a client that leaves mid-body for the client’s doing, not an internal error', async () => {
    const port = Number(new URL(relay.url).port);
    const internal = async () =>
      Number(
        /anode_errors_total\{code="internal"\} (\d+)/.exec(await (await fetch(`${relay.url}/metrics`)).text())?.[1] ??
          0,
      );
    const before = await internal();
    for (let i = 0; i < 3; i++) {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(
        'POST /v1/topics/gone.t/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
          'Content-Length: 1000\r\n\r\n{"data":',
      );
      await new Promise((r) => setTimeout(r, 100));
      socket.resetAndDestroy();
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await internal(), before, 'no internal error counted');
    assert.equal((await fetch(`${relay.url}/healthz`)).status, 200);
  });

  it('answers an upgrade whose request target is no URL with 400 bad_frame, and stays up', async () => {
    const port = Number(new URL(relay.url).port);
    // Node's HTTP parser answers 400 itself to some targets ('//a b'); the others reach the upgrade.
    for (const target of ['//[', '//%', '//a b']) {
      const socket = connect(port, '127.0.0.1');
      socket.write(
        `GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      await once(socket, 'close');
      const answer = Buffer.concat(chunks).toString();
      assert.match(answer, /^HTTP\/1\.1 400/, `${target}: ${answer}`);
      if (target !== '//a b') assert.match(answer, /bad_frame/, `${target}: ${answer}`);
    }
    assert.equal((await fetch(`${relay.url}/healthz`)).status, 200);
  });
});

/** Where the keep-alive tests below send: a relay, then the edge; the token may publish to keep.alive only. */
const target = { url: '', token: '' };

/** One request on `agent`; the answer's status, body, headers and the socket it came on. */
const post = (agent: Agent, body: Buffer | string, headers: Record<string, string> = {}, topic = 'keep.alive') =>
  new Promise<{ status: number; body: string; headers: IncomingHttpHeaders; socket: Socket }>((resolve, reject) => {
    const url = new URL(`${target.url}/v1/topics/${topic}/messages`);
    const request = httpRequest(url, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', ...bearer(target.token), ...headers },
    });
    request.on('error', reject);
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (c: Buffer) => chunks.push(c));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          headers: response.headers,
          socket: request.socket as Socket,
        }),
      );
    });
    request.end(body);
  });

// A refused body the relay never read used to stay wired to a stream nobody read: the server
// could not drain it, and closed the connection ~500 ms later, under whatever request the client
// had sent on it since (a publish stored, its answer lost). Seen as "other side closed" in the fuzz.
const keepsConnection = async (refuse: (agent: Agent) => ReturnType<typeof post>, status: number, code: RegExp) => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const refused = await refuse(agent);
    assert.equal(refused.status, status);
    assert.match(refused.body, code);
    let closed = false;
    refused.socket.once('close', () => (closed = true));
    const started = Date.now();
    for (let i = 0; Date.now() - started < 1_500; i++) {
      const next = await post(agent, JSON.stringify({ data: i }));
      assert.equal(next.status, 202, next.body);
      assert.equal(next.socket, refused.socket, 'the same connection answered');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(closed, false, 'the relay kept the connection');
  } finally {
    agent.destroy();
  }
};

describe('HTTP keep-alive after a refused body', () => {
  let relay: TestRelay;
  let token: string;
  before(async () => {
    relay = await startRelay({ 'max-message-bytes': '32768', 'max-body-bytes': '262144', 'jwt-secret': JWT_SECRET });
    token = await signToken(JWT_SECRET, { pub: ['keep.alive'] });
    Object.assign(target, { url: relay.url, token });
  });
  after(() => relay.stop());

  it('keeps the connection of a body refused by its length usable, and drains the body', () =>
    keepsConnection((agent) => post(agent, Buffer.alloc(600_000, 0x20)), 413, /too_large/));

  it('keeps the connection of a large body refused by its token usable', () =>
    keepsConnection((agent) => post(agent, Buffer.alloc(200_000, 0x20), {}, 'keep.forbidden'), 403, /forbidden/));

  it('keeps an idle connection for http_keep_alive_ms (65 s by default, above the 60 s a proxy often uses)', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answer = await post(agent, JSON.stringify({ data: 'hello' }));
      assert.equal(answer.headers['keep-alive'], 'timeout=65');
    } finally {
      agent.destroy();
    }
    const short = await startRelay({ 'http-keep-alive-ms': '1000' });
    // A raw socket: Node's own agent would close it first, going by the server's hint.
    const socket = connect(Number(new URL(short.url).port), '127.0.0.1');
    try {
      await once(socket, 'connect');
      let head = '';
      socket.on('data', (d: Buffer) => (head += d.toString()));
      socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await until('the answer', () => (head.includes('\r\n\r\n') ? true : undefined));
      assert.match(head, /keep-alive: timeout=1\r\n/i);
      const started = Date.now();
      await once(socket, 'close');
      const waited = Date.now() - started;
      // Node closes it after the timeout plus its one-second buffer; its own default would be 6 s.
      assert.ok(waited >= 900 && waited < 4_500, `closed after ${waited} ms`);
    } finally {
      socket.destroy();
      await short.stop();
    }
  });

  it('answers a chunked body over the limit with 413 and closes its connection, and the next request is answered', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const refused = await post(agent, Buffer.alloc(300_000, 0x20), { 'transfer-encoding': 'chunked' });
      assert.equal(refused.status, 413);
      assert.match(refused.body, /too_large/);
      assert.equal(refused.headers.connection, 'close', 'the unread rest is not left on a kept-alive connection');
      const next = await post(agent, JSON.stringify({ data: 'after' }));
      assert.equal(next.status, 202, next.body);
      const chunkedOk = await post(agent, JSON.stringify({ data: 'chunked' }), { 'transfer-encoding': 'chunked' });
      assert.equal(chunkedOk.status, 202, chunkedOk.body);
    } finally {
      agent.destroy();
    }
  });
});

describe('edge (workerd): HTTP keep-alive after a refused body', () => {
  let edge: EdgeRuntime;
  before(async () => {
    edge = await startEdge({ JWT_SECRET, MAX_MESSAGE_BYTES: '32768', MAX_BODY_BYTES: '262144' });
    Object.assign(target, { url: edge.url, token: await signToken(JWT_SECRET, { pub: ['keep.alive'] }) });
  });
  after(() => edge.stop());

  // workerd keeps a connection for the next request only once the request's body was read; a
  // route that refused before reading it left the connection to be dropped without a word, and
  // the client's next request on it failed ("socket hang up", ECONNRESET).
  it('keeps the connection of a body refused by its length usable', () =>
    keepsConnection((agent) => post(agent, Buffer.alloc(300_000, 0x20)), 413, /too_large/));

  it('keeps the connection of a body refused by its token usable', () =>
    keepsConnection((agent) => post(agent, Buffer.alloc(100_000, 0x20), {}, 'keep.forbidden'), 403, /forbidden/));

  it('keeps the connection of a body refused for its topic usable', () =>
    keepsConnection((agent) => post(agent, JSON.stringify({ data: 1 }), {}, 'bad..topic'), 400, /bad_topic/));

  // A chunked body declares no length: it is not drained (it could be endless), so the refusal
  // goes out at once. It used to be read to its end first (Number(null) is 0), the answer withheld.
  it('answers a chunked body refused for its token at once, without reading it to its end', async () => {
    const request = httpRequest(new URL(`${target.url}/v1/topics/keep.alive/messages`), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked', ...bearer('not-a-token') },
    });
    const answered = new Promise<number>((resolve, reject) => {
      request.on('response', (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
    });
    answered.catch(() => {}); // the request is destroyed below, answered or not
    request.write(Buffer.alloc(64 * 1024, 0x20)); // and never ended
    const status = await Promise.race([answered, new Promise((r) => setTimeout(() => r('no answer in 5 s'), 5_000))]);
    request.destroy();
    assert.equal(status, 401);
  });
});
