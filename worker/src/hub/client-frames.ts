import {
  type ClientFrame,
  ForbiddenError,
  RateLimitedError,
  readClientFrame,
  takeTokens,
  UnauthorizedError,
} from '@anode/shared';
import type { HubCore } from './hub-core.ts';
import type { createSubscriptions } from './subscriptions.ts';

/**
 * One frame from a socket on this topic's object, checked as a relay checks it (size, binary,
 * shape: shared readClientFrame; then token expiry, rights, rate). A bad frame gets a coded `err`
 * and the socket stays open. The Worker's connection (sockets/connection.ts) routes each frame to
 * its topic's object, so a frame naming another topic never comes here from it; one that does is
 * refused with `forbidden`.
 */
export function createClientFrames(core: HubCore, subscriptions: ReturnType<typeof createSubscriptions>) {
  const { clients, config } = core;

  const assertHere = (topic: string, what: string) => {
    if (topic !== core.topic)
      throw new ForbiddenError(`this socket serves only ${core.topic}; cannot ${what} ${topic}`);
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
        const bucket = takeTokens(state, config.PUBLISH_RATE, config.PUBLISH_BURST);
        clients.update(ws, { tokens: bucket.tokens, at: bucket.at });
        if (!bucket.ok) throw new RateLimitedError(`publish rate limit of ${config.PUBLISH_RATE}/s exceeded`);
        const [ack] = core.accept([frame], state);
        if (!ack) throw new Error('a publish was accepted without an ack');
        return clients.frame(ws, { op: 'ack', id: ack.id, cursor: ack.cursor, ...withRef });
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
    const read = readClientFrame(message, config.MAX_FRAME_BYTES);
    if (!read.ok) return clients.error(ws, read.error, read.ref);
    try {
      handle(ws, read.frame);
    } catch (error) {
      clients.error(ws, error, read.frame.ref);
    }
  };
}
