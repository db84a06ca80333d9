import { ForbiddenError, receiveClientFrame, type SessionPort, takeTokens } from '@anode/shared';
import type { HubCore } from './hub-core.ts';
import type { createSubscriptions } from './subscriptions.ts';

/**
 * One frame from a socket on this topic's object, handled as a relay handles it (shared
 * receiveClientFrame: size, binary, shape, token expiry, rights, rate); this is its port. A bad frame gets a coded `err`
 * and the socket stays open. The Worker's connection (sockets/connection.ts) routes each frame to
 * its topic's object, so a frame naming another topic never comes here from it; one that does is
 * refused with `forbidden`.
 */
export function createClientFrames(
  core: Pick<HubCore, 'clients' | 'config' | 'topic' | 'accept' | 'ready'>,
  subscriptions: ReturnType<typeof createSubscriptions>,
) {
  const { clients, config } = core;

  const assertHere = (topic: string, what: string) => {
    if (topic !== core.topic)
      throw new ForbiddenError(`this socket serves only ${core.topic}; cannot ${what} ${topic}`);
  };

  /** A socket of this object as the protocol's session port (shared/src/session.ts). */
  const portOf = (ws: WebSocket): SessionPort => {
    const state = clients.state(ws);
    return {
      expired: () => state.exp !== undefined && state.exp * 1000 <= Date.now(),
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
        const [ack] = core.accept([frame], state);
        if (!ack) throw new Error('a publish was accepted without an ack');
        return ack;
      },
      subscribe: (frame) => subscriptions.subscribe(ws, frame.after, frame.ref),
      unsubscribe: (frame) => {
        if (frame.topic === core.topic) subscriptions.unsubscribe(ws);
      },
      send: (frame) => clients.frame(ws, frame),
      refuse: (cause, ref) => clients.error(ws, cause, ref),
    };
  };

  const receive = (ws: WebSocket, message: string | ArrayBuffer) => {
    void receiveClientFrame(message, config.MAX_FRAME_BYTES, portOf(ws));
  };
  // While this object cannot check publishes yet (core.ready), frames wait, all of them and in
  // order: a ping answered after a pub still means the pub was answered.
  let held = 0;
  let chain: Promise<void> = Promise.resolve();
  const later = (ws: WebSocket, message: string | ArrayBuffer) => {
    if (ws.readyState !== WebSocket.OPEN) return; // the socket went away while its frame waited
    try {
      receive(ws, message);
    } catch (error) {
      console.error('edge: a held frame failed', error);
    }
  };
  return (ws: WebSocket, message: string | ArrayBuffer): void | Promise<void> => {
    const wait = held > 0 ? chain : core.ready();
    if (wait === undefined) return receive(ws, message);
    held += 1;
    chain = wait.then(() => later(ws, message)).finally(() => (held -= 1));
    return chain;
  };
}
