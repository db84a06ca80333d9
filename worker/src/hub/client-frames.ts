import {
  type ClientFrame,
  ForbiddenError,
  createFrameOrder,
  readClientFrame,
  type SessionAck,
  type SessionPort,
  takeTokens,
  UnavailableError,
} from '@anode/shared';
import type { HubCore } from './hub-core.ts';
import type { createSubscriptions } from './subscriptions.ts';

/**
 * One frame from a socket on this topic's object, handled as a relay handles it (shared
 * readClientFrame and handleClientFrame: size, binary, shape, token expiry, rights, rate); this
 * is its port. A bad frame gets a coded `err` and the socket stays open. The Worker's connection
 * (sockets/connection.ts) routes each frame to its topic's object, so a frame naming another
 * topic never comes here from it; one that does is refused with `forbidden`.
 *
 * A `ping` is answered only once every frame before it on its socket was (PROTOCOL.md; shared
 * createFrameOrder, as on a relay): a publish waiting for the reserved source names has its ack
 * or err sent, a resume its `subscribed` (or its err, or it was dropped by a later `sub`/`unsub`).
 * The edge connection fences on this. Frames other than pings run at once, in order.
 */
export function createClientFrames(
  core: Pick<HubCore, 'clients' | 'config' | 'topic' | 'accept' | 'ready'>,
  subscriptions: ReturnType<typeof createSubscriptions>,
) {
  const { clients, config } = core;
  // Per socket (this instance's memory: it lives while a frame is unanswered, which keeps it awake).
  const orders = new WeakMap<WebSocket, (frame: ClientFrame, text: string) => void>();

  const assertHere = (topic: string, what: string) => {
    if (topic !== core.topic)
      throw new ForbiddenError(`this socket serves only ${core.topic}; cannot ${what} ${topic}`);
  };

  // While this object cannot check publishes yet (core.ready: a linked object that never heard the
  // reserved source names), publishes wait, in order; nothing else does.
  let held = 0;
  let chain: Promise<unknown> = Promise.resolve();

  /** A socket of this object as the protocol's session port (shared/src/session.ts). */
  const portOf = (ws: WebSocket): SessionPort => {
    const state = clients.state(ws);
    const accept = (frame: Parameters<SessionPort['publish']>[0]): SessionAck => {
      const [ack] = core.accept([frame], state);
      if (!ack) throw new Error('a publish was accepted without an ack');
      return ack;
    };
    return {
      expired: () => state.exp !== undefined && state.exp * 1000 <= Date.now(),
      close: (reason, message) => clients.close(ws, reason, message),
      assertPublish(topic) {
        assertHere(topic, 'publish to');
        if (!state.pub) throw new ForbiddenError(`not allowed to publish to ${topic}`);
      },
      assertSubscribe: (topic) => assertHere(topic, 'subscribe to'),
      takeToken() {
        // The bucket lives in the socket's attachment: it survives hibernation.
        const bucket = takeTokens(state, config.PUBLISH_RATE, config.PUBLISH_BURST);
        clients.update(ws, { tokens: bucket.tokens, at: bucket.at });
        return bucket.ok;
      },
      publishRate: config.PUBLISH_RATE,
      publish: (frame) => {
        const wait = held > 0 ? chain : core.ready();
        if (wait === undefined) return accept(frame);
        held += 1;
        const acked = wait.then(() => {
          // Nobody would hear the ack: the edge connection refuses what it had not answered.
          if (ws.readyState !== WebSocket.OPEN)
            throw new UnavailableError('the socket closed while its publish waited');
          return accept(frame);
        });
        chain = acked.then(
          () => (held -= 1),
          () => (held -= 1),
        );
        return acked;
      },
      subscribe: (frame) => subscriptions.subscribe(ws, frame.after, frame.ref),
      unsubscribe: (frame) => {
        if (frame.topic === core.topic) subscriptions.unsubscribe(ws);
      },
      send: (frame) => clients.frame(ws, frame),
      refuse: (cause, ref) => clients.error(ws, cause, ref),
    };
  };

  const orderOf = (ws: WebSocket) => {
    let order = orders.get(ws);
    if (!order) orders.set(ws, (order = createFrameOrder(() => portOf(ws))));
    return order;
  };

  return (ws: WebSocket, message: string | ArrayBuffer): void => {
    const read = readClientFrame(message, config.MAX_FRAME_BYTES);
    if (!read.ok) return clients.error(ws, read.error, read.ref);
    orderOf(ws)(read.frame, read.text);
  };
}
