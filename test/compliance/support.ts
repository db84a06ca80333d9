import assert from 'node:assert/strict';
import { type ServerFrame, signToken, type TokenGrants } from '@anode/shared';
import { openSocket, type RawSocket } from '../helpers/ws.ts';
import { SECRET, type Target } from './targets.ts';

/** Helpers the compliance cases share: tokens, HTTP calls, socket round trips. */
export type Frame<Op extends ServerFrame['op']> = Extract<ServerFrame, { op: Op }>;
export type ErrorBody = { error: { code: string; message: string } };
export type Acks = { messages: { id: string; cursor: string }[] };

/** One protocol case, run against every target. */
export interface Case {
  name: string;
  run(target: Target): Promise<void>;
}

/** A token granting everything, under a subject of its own (HTTP rate buckets are per subject). */
export function tokenFor(subject: string, grants: Partial<TokenGrants> = {}, expiresIn: string | number = '1h') {
  return signToken(SECRET, { pub: ['>'], sub: ['>'], src: ['>'], subject, ...grants }, expiresIn);
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

export async function request(url: string, init: RequestInit = {}): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text.length > 0 ? (JSON.parse(text) as unknown) : undefined };
}

export const get = (target: Target, path: string, token?: string) =>
  request(`${target.url}${path}`, { headers: token ? bearer(token) : {} });

export const post = (
  target: Target,
  topic: string,
  body: unknown,
  token?: string,
  headers: Record<string, string> = {},
) =>
  request(`${target.url}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? bearer(token) : {}), ...headers },
    body: typeof body === 'string' ? body : body instanceof Uint8Array ? new Uint8Array(body) : JSON.stringify(body),
  });

/** Publish `data` (one message each) over HTTP; resolves with the acks. */
export async function publish(target: Target, topic: string, token: string, data: unknown[]) {
  const res = await post(
    target,
    topic,
    data.map((d) => ({ data: d })),
    token,
  );
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return (res.body as Acks).messages;
}

export function assertHttpError(res: { status: number; body: unknown }, status: number, code: string): string {
  assert.equal(res.status, status, JSON.stringify(res.body));
  const { error } = res.body as ErrorBody;
  assert.equal(error.code, code, JSON.stringify(res.body));
  assert.equal(typeof error.message, 'string');
  return error.message;
}

export const withRef = (ref: string) => (f: ServerFrame) => 'ref' in f && f.ref === ref;
export const isOp =
  <Op extends ServerFrame['op']>(op: Op) =>
  (f: ServerFrame): f is Frame<Op> =>
    f.op === op;

/**
 * A client socket. `closeTimeout`: workerd sends its close frame at once but releases the TCP
 * connection only when the object next hibernates; `ws` reports `close` when TCP closes.
 */
export const connect = (url: string, headers: Record<string, string> = {}) =>
  openSocket(url, { headers, closeTimeout: 200 } as Parameters<typeof openSocket>[1]);

/** The one-topic socket, subscribed on open; resolves once `subscribed` came. */
export async function topicSocket(target: Target, topic: string, token: string, after?: string) {
  const query = after === undefined ? '' : `?after=${after}`;
  const sock = await connect(`${target.wsUrl}/v1/topics/${topic}/ws${query}`, bearer(token));
  return sock;
}

/** Sends a frame with a ref and returns the error frame answering it. */
export async function errFor(sock: RawSocket, frame: Record<string, unknown>, ref: string): Promise<Frame<'err'>> {
  sock.send({ ...frame, ref });
  const reply = await sock.next(withRef(ref));
  assert.equal(reply.op, 'err', `expected err for ${JSON.stringify(frame)}, got ${JSON.stringify(reply)}`);
  return reply as Frame<'err'>;
}

/** A ping round trip: every frame sent before it has been handled (frames are handled in order). */
export async function roundTrip(sock: RawSocket, ref = `rt-${Math.random()}`): Promise<void> {
  sock.send({ op: 'ping', ref });
  await sock.next(withRef(ref));
}

/** The upgrade must be refused with an HTTP status and the protocol's JSON error body. */
export async function refusedUpgrade(url: string, headers: Record<string, string> = {}) {
  const failure = await connect(url, headers).then(
    (sock) => {
      sock.close();
      throw new Error(`upgrade to ${url} was accepted`);
    },
    (error: { status?: number; body?: string }) => error,
  );
  assert.ok(failure.status, `no HTTP status in ${String(failure)}`);
  return { status: failure.status, error: (JSON.parse(failure.body ?? '') as ErrorBody).error };
}

export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A topic name unique to one case and target run. */
export const fresh = (prefix: string) => `${prefix}.${Math.random().toString(36).slice(2, 10)}`;

export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
