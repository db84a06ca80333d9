import { refOf, UnavailableError } from '@anode/shared';

/**
 * One socket from a client connection (connection.ts) to where a topic is served: the topic's
 * Durable Object, or a relay's `/v1/ws` for patterns. Frames sent before it opens are queued; if
 * it cannot open, every queued frame that carried a ref is answered with `unavailable`.
 * `retire` lets it finish what was sent (a ping fence: frames are handled in order) and closes it.
 */
export interface Upstream {
  readonly key: string;
  /** Subscriptions this connection holds through it (exact topic, or patterns). */
  readonly subscriptions: Set<string>;
  usedAt: number;
  send(text: string): void;
  retire(): void;
  close(): void;
}

export interface UpstreamEvents {
  /** A frame for the client. */
  onFrame(text: string, from: Upstream): void;
  /** It closed without being retired or closed by us. */
  onLost(code: number, reason: string, from: Upstream): void;
  /** Answer a queued frame that could not be sent. */
  onRefused(error: UnavailableError, ref: string | undefined): void;
  /** It could not open (its queued frames were refused). */
  onDialFailed(from: Upstream, error: unknown): void;
}

const FENCE_REF = 'anode-connection-fence';
const FENCE_PONG = `{"op":"pong","ref":"${FENCE_REF}"}`;

export function createUpstream(key: string, dial: () => Promise<WebSocket>, events: UpstreamEvents): Upstream {
  let socket: WebSocket | undefined;
  let queue: string[] | undefined = [];
  let ending: 'retiring' | 'closed' | undefined;

  const upstream: Upstream = {
    key,
    subscriptions: new Set(),
    usedAt: Date.now(),
    send(text) {
      upstream.usedAt = Date.now();
      if (queue) queue.push(text);
      else socket?.send(text);
    },
    retire() {
      if (ending) return;
      ending = 'retiring';
      upstream.send(`{"op":"ping","ref":"${FENCE_REF}"}`);
    },
    close() {
      ending = 'closed';
      queue = undefined;
      try {
        socket?.close(1000, 'client left');
      } catch {
        // already closed
      }
    },
  };

  dial().then(
    (ws) => {
      socket = ws;
      if (ending === 'closed') return upstream.close();
      ws.accept();
      ws.addEventListener('message', (event) => {
        const text = typeof event.data === 'string' ? event.data : '';
        if (text === FENCE_PONG) return upstream.close();
        events.onFrame(text, upstream);
      });
      ws.addEventListener('close', (event) => {
        if (ending === undefined) events.onLost(event.code, event.reason, upstream);
        ending = 'closed';
      });
      const waiting = queue ?? [];
      queue = undefined;
      for (const text of waiting) ws.send(text);
    },
    (error: unknown) => {
      const waiting = queue ?? [];
      queue = undefined;
      ending = 'closed';
      const refusal = new UnavailableError(`the edge could not reach where ${key} is served; try again`);
      for (const text of waiting) events.onRefused(refusal, refOf(text));
      events.onDialFailed(upstream, error);
    },
  );
  return upstream;
}
