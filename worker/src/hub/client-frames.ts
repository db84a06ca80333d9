import {
  BadFrameError,
  type ClientFrame,
  ForbiddenError,
  parseClientFrame,
  RateLimitedError,
  refOf,
  TooLargeError,
  UnauthorizedError,
} from '@anode/shared';
import type { HubCore } from './hub-core.ts';
import type { createSubscriptions } from './subscriptions.ts';

/**
 * One frame from a client socket, checked as a relay checks it: size, text, shape, token expiry,
 * rights, rate. A bad frame gets a coded `err` and the socket stays open. An edge socket serves
 * its one topic: `sub`/`pub` naming another topic or a pattern are refused with `forbidden`.
 */
const encoder = new TextEncoder();

/** A token bucket kept as plain data (it lives in a socket attachment): take `count` tokens. */
export function takeToken(
  bucket: { tokens: number; at: number },
  rate: number,
  burst: number,
  count = 1,
  now = Date.now(),
) {
  const tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
  return tokens >= count ? { ok: true, tokens: tokens - count, at: now } : { ok: false, tokens, at: now };
}

export function createClientFrames(core: HubCore, subscriptions: ReturnType<typeof createSubscriptions>) {
  const { clients, config } = core;

  const assertHere = (topic: string, what: string) => {
    if (topic !== core.topic) {
      throw new ForbiddenError(
        `this edge connection serves only ${core.topic}; ${what} ${topic} on its own /v1/topics/{topic}/ws connection`,
      );
    }
  };

  const handle = (ws: WebSocket, frame: ClientFrame) => {
    const ref = frame.ref;
    const withRef = ref === undefined ? {} : { ref };
    const state = clients.state(ws);
    if (state.exp !== undefined && state.exp * 1000 <= Date.now()) throw new UnauthorizedError('token expired');
    switch (frame.op) {
      case 'ping':
        return clients.frame(ws, { op: 'pong', ...withRef });
      case 'pub': {
        assertHere(frame.topic, 'publish to');
        if (!state.pub) throw new ForbiddenError(`not allowed to publish to ${frame.topic}`);
        const bucket = takeToken(state, config.PUBLISH_RATE, config.PUBLISH_BURST);
        clients.update(ws, { tokens: bucket.tokens, at: bucket.at });
        if (!bucket.ok) throw new RateLimitedError(`publish rate limit of ${config.PUBLISH_RATE}/s exceeded`);
        const [ack] = core.accept([frame], state);
        return clients.frame(ws, { op: 'ack', id: ack?.id, cursor: ack?.cursor, ...withRef });
      }
      case 'sub':
        assertHere(frame.topic, 'subscribe to');
        return subscriptions.subscribe(ws, frame.after, ref);
      case 'unsub':
        if (frame.topic === core.topic) subscriptions.unsubscribe(ws);
        return;
    }
  };

  return (ws: WebSocket, message: string | ArrayBuffer): void => {
    const size =
      typeof message === 'string'
        ? message.length * 3 > config.MAX_FRAME_BYTES
          ? encoder.encode(message).byteLength
          : message.length
        : message.byteLength;
    const text = typeof message === 'string' ? message : '';
    try {
      if (size > config.MAX_FRAME_BYTES)
        throw new TooLargeError(`frame of ${size} bytes exceeds ${config.MAX_FRAME_BYTES}`);
      if (typeof message !== 'string') throw new BadFrameError('binary frames are not supported');
      handle(ws, parseClientFrame(text));
    } catch (error) {
      clients.error(ws, error, size > config.MAX_FRAME_BYTES ? undefined : refOf(text));
    }
  };
}
