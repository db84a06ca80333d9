import { refOf, UnavailableError } from '@anode/shared';

/**
 * One socket from a client connection (connection.ts) to where a topic is served: the topic's
 * Durable Object, or a relay's `/v1/ws` for patterns. Frames sent before it opens are queued.
 * It keeps the refs of the frames it was sent that are answered (`pub`, `sub`) until their
 * answer comes back, so none is left unanswered: if it cannot open, or is lost, each is answered
 * with `unavailable`. `fence` is how the connection keeps a client's ping in order (PROTOCOL.md).
 * `retire` lets it finish what was sent (a fence) and closes it.
 */
export interface Upstream {
  readonly key: string;
  /** Subscriptions this connection holds through it (exact topic, or patterns). */
  readonly subscriptions: Set<string>;
  usedAt: number;
  /** Forward a client frame; `answered` when the upstream answers it (ack, subscribed or err). */
  send(text: string, answered?: { ref: string | undefined }): void;
  /**
   * Resolves once every frame sent before it is answered, or once this upstream has ended (its
   * unanswered frames refused, or the client gone). A fence is a ping with a ref of its own, so
   * it also orders `unsub`, which has no answer.
   */
  fence(): Promise<void>;
  retire(): void;
  close(): void;
}

export interface UpstreamEvents {
  /** A frame for the client. */
  onFrame(text: string, from: Upstream): void;
  /** It closed without being retired or closed by us (its unanswered frames were refused). */
  onLost(code: number, reason: string, from: Upstream): void;
  /** Answer a frame it will never answer. */
  onRefused(error: UnavailableError, ref: string | undefined): void;
  /** It could not open (its frames were refused). */
  onDialFailed(from: Upstream, error: unknown): void;
}

/** What answers a client frame, and what answers a fence (an `err` if the upstream refused the ping). */
const ANSWER = /^\{"op":"(ack|subscribed|err|pong)"/;

interface Fence {
  ref: string;
  /** Answers needed first: a relay answers a ping before the `subscribed` of a resume it is still reading. */
  answers: number;
  resolve(): void;
}

export function createUpstream(key: string, dial: () => Promise<WebSocket>, events: UpstreamEvents): Upstream {
  let socket: WebSocket | undefined;
  let queue: string[] | undefined = [];
  let ending: 'retiring' | 'closed' | undefined;
  /** Refs of answered frames sent and not answered yet, oldest first; and counts of both. */
  const awaiting: (string | undefined)[] = [];
  let sent = 0;
  let answered = 0;
  /** Fences in the order sent; the first `ponged` of them have their pong. */
  const fences: Fence[] = [];
  let ponged = 0;
  // Unguessable: a client's own ref can never be taken for a fence's.
  const fencePrefix = `anode-fence-${crypto.randomUUID()}-`;
  let fenceCount = 0;

  const write = (text: string) => {
    if (queue) queue.push(text);
    else socket?.send(text);
  };
  const settle = () => {
    while (ponged > 0 && answered >= (fences[0] as Fence).answers) {
      ponged -= 1;
      (fences.shift() as Fence).resolve();
    }
  };
  /** No more answers will come: refuse what is unanswered and let every fence through. */
  const end = (refusal: UnavailableError | undefined) => {
    ending = 'closed';
    queue = undefined;
    for (const ref of awaiting.splice(0)) if (refusal) events.onRefused(refusal, ref);
    ponged = 0;
    for (const fence of fences.splice(0)) fence.resolve();
  };
  /** A frame from upstream: a fence's answer is kept from the client; a frame's answer is counted. */
  const receive = (text: string) => {
    const op = ANSWER.exec(text)?.[1];
    if (op === 'pong' || op === 'err') {
      const next = fences[ponged];
      if (next && refOf(text) === next.ref) {
        ponged += 1;
        return settle();
      }
      if (op === 'pong') return; // only fences are pinged
    }
    if (op !== undefined) {
      answered += 1;
      awaiting.shift();
      settle();
    }
    events.onFrame(text, upstream);
  };

  const upstream: Upstream = {
    key,
    subscriptions: new Set(),
    usedAt: Date.now(),
    send(text, expects) {
      upstream.usedAt = Date.now();
      write(text);
      if (!expects) return;
      sent += 1;
      awaiting.push(expects.ref);
    },
    fence() {
      if (ending === 'closed') return Promise.resolve();
      fenceCount += 1;
      const ref = `${fencePrefix}${fenceCount}`;
      return new Promise<void>((resolve) => {
        fences.push({ ref, answers: sent, resolve });
        try {
          write(`{"op":"ping","ref":"${ref}"}`);
        } catch {
          // closing under us: its close event ends every fence
        }
      });
    },
    retire() {
      if (ending) return;
      ending = 'retiring';
      void upstream.fence().then(() => upstream.close());
    },
    close() {
      end(undefined);
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
      ws.addEventListener('message', (event) => receive(typeof event.data === 'string' ? event.data : ''));
      ws.addEventListener('close', (event) => {
        if (ending === 'closed') return;
        const lost = ending === undefined;
        end(
          new UnavailableError(
            `the edge lost where ${key} is served before it answered; try again (a publish with a key is not stored twice)`,
          ),
        );
        if (lost) events.onLost(event.code, event.reason, upstream);
      });
      const waiting = queue ?? [];
      queue = undefined;
      for (const text of waiting) ws.send(text);
    },
    (error: unknown) => {
      end(new UnavailableError(`the edge could not reach where ${key} is served; try again`));
      events.onDialFailed(upstream, error);
    },
  );
  return upstream;
}
