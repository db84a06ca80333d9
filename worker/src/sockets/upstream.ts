import { AnodeError, refOf, UnavailableError } from '@anode/shared';

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
  /** Whether a `sub` sent through it is not answered yet: what it sends may be that resume's replay. */
  readonly replaying: boolean;
  usedAt: number;
  /**
   * Forward a client frame; `answered` when the upstream answers it (ack, subscribed or err), with
   * the topic for a `sub`. A `sub` or `unsub` of a topic drops the answer owed to an earlier `sub`
   * of it still unanswered: the far end abandons that resume and never answers it.
   */
  send(text: string, answered?: { ref: string | undefined; sub?: string }, drops?: string): void;
  /**
   * Resolves once every frame sent before it was handled, or once this upstream has ended (its
   * unanswered frames refused, or the client gone). A fence is a ping with a ref of its own: the
   * far end (a relay, a topic's object) answers a ping only after every frame before it was (an
   * ack sent, a resume's `subscribed` sent or the resume dropped by a later `sub`/`unsub`), so
   * nothing is counted here, and `unsub`, which has no answer, is ordered too.
   */
  fence(): Promise<void>;
  /** Close once what was sent is handled (a fence); resolves when it has closed. */
  retire(): Promise<void>;
  close(): void;
}

/** What an upstream needs of workerd's WebSocket (narrow, so a unit test can stand in for it). */
export interface UpstreamSocket {
  accept(): void;
  send(text: string): void;
  close(code: number, reason: string): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
}

export interface UpstreamEvents {
  /** A frame for the client. */
  onFrame(text: string, from: Upstream): void;
  /** It closed without being retired or closed by us (its unanswered frames were refused). */
  onLost(code: number, reason: string, from: Upstream): void;
  /** Answer a frame it will never answer. */
  onRefused(error: AnodeError, ref: string | undefined): void;
  /** It could not open (its frames were refused). */
  onDialFailed(from: Upstream, error: unknown): void;
  /**
   * The far end refused the `sub` of this topic (an err answered it, and no later `sub` of it is
   * pending): the subscription never began, as on a relay, where a failed subscribe is removed.
   */
  onSubRefused(topic: string, from: Upstream): void;
}

/** What answers a client frame, and what answers a fence (an `err` if the upstream refused the ping). */
const ANSWER = /^\{"op":"(ack|subscribed|err|pong)"/;
const TOPIC = /^\{"op":"subscribed","topic":"([^"]+)"/;

interface Fence {
  ref: string;
  resolve(): void;
}

export function createUpstream(key: string, dial: () => Promise<UpstreamSocket>, events: UpstreamEvents): Upstream {
  let socket: UpstreamSocket | undefined;
  let queue: string[] | undefined = [];
  let ending: 'retiring' | 'closed' | undefined;
  let retired: Promise<void> | undefined;
  /**
   * Frames sent and not answered yet, counted by ref: answers need not come in send order (a
   * resume can finish after a later publish's ack), so an answer takes its own ref off. Frames
   * without a ref share the `undefined` count: an answer without a ref takes one off, and on loss
   * each one left gets an `err` without a ref (the client could not tell them apart either).
   */
  const awaiting = new Map<string | undefined, number>();
  /** The refs of `sub`s not answered yet, by topic (see send's `drops`). */
  const resumes = new Map<string, (string | undefined)[]>();
  /** Fences in the order sent (pings are answered in order). */
  const fences: Fence[] = [];
  // Unguessable: a client's own ref can never be taken for a fence's.
  const fencePrefix = `anode-fence-${crypto.randomUUID()}-`;
  let fenceCount = 0;

  const write = (text: string) => {
    if (queue) queue.push(text);
    else socket?.send(text);
  };
  /** The answer to a frame sent with this ref arrived. */
  const answered = (ref: string | undefined) => {
    const left = (awaiting.get(ref) ?? 0) - 1;
    if (left > 0) awaiting.set(ref, left);
    else awaiting.delete(ref);
  };
  /** A `subscribed` (or an err) for `ref` arrived: that resume is owed no more. */
  const resumed = (ref: string | undefined, topic: string | undefined) => {
    if (topic === undefined) return;
    const refs = resumes.get(topic);
    const at = refs?.indexOf(ref) ?? -1;
    if (!refs || at < 0) return;
    refs.splice(at, 1);
    if (refs.length === 0) resumes.delete(topic);
  };
  /**
   * The topic whose pending `sub` an err with this ref answers, when that is certain: every frame
   * waiting for an answer with this ref is a `sub` of that one topic (a `pub` with the same ref, or
   * subs of two patterns without refs, could be the one refused instead).
   */
  const refusedSub = (ref: string | undefined): string | undefined => {
    const topics = [...resumes].filter(([, refs]) => refs.includes(ref));
    const [only] = topics;
    if (topics.length !== 1 || !only) return undefined;
    const [topic, refs] = only;
    return refs.filter((r) => r === ref).length === awaiting.get(ref) ? topic : undefined;
  };
  /** No more answers will come: refuse what is unanswered and let every fence through. */
  const end = (refusal: AnodeError | undefined) => {
    ending = 'closed';
    queue = undefined;
    const unanswered = [...awaiting];
    awaiting.clear();
    resumes.clear();
    if (refusal) for (const [ref, count] of unanswered) for (let i = 0; i < count; i++) events.onRefused(refusal, ref);
    for (const fence of fences.splice(0)) fence.resolve();
  };
  /** A frame from upstream: a fence's answer is kept from the client; a frame's answer is taken off. */
  const receive = (text: string) => {
    const op = ANSWER.exec(text)?.[1];
    if (op === undefined) return events.onFrame(text, upstream);
    const ref = refOf(text);
    if (op === 'pong' || op === 'err') {
      const at = ref === undefined ? -1 : fences.findIndex((fence) => fence.ref === ref);
      if (at >= 0) {
        // Pings are answered in order: every fence up to this one is through.
        for (const fence of fences.splice(0, at + 1)) fence.resolve();
        return;
      }
      if (op === 'pong') return; // only fences are pinged
    }
    const refused = op === 'err' ? refusedSub(ref) : undefined;
    answered(ref);
    if (op === 'subscribed') resumed(ref, TOPIC.exec(text)?.[1]);
    else if (op === 'err') for (const topic of [...resumes.keys()]) resumed(ref, topic);
    if (refused !== undefined && !resumes.has(refused)) events.onSubRefused(refused, upstream);
    events.onFrame(text, upstream);
  };

  const upstream: Upstream = {
    key,
    subscriptions: new Set(),
    get replaying() {
      return resumes.size > 0;
    },
    usedAt: Date.now(),
    send(text, expects, drops) {
      upstream.usedAt = Date.now();
      if (drops !== undefined) {
        for (const ref of resumes.get(drops) ?? []) answered(ref);
        resumes.delete(drops);
      }
      write(text);
      if (expects) awaiting.set(expects.ref, (awaiting.get(expects.ref) ?? 0) + 1);
      if (expects?.sub !== undefined) {
        const refs = resumes.get(expects.sub);
        if (refs) refs.push(expects.ref);
        else resumes.set(expects.sub, [expects.ref]);
      }
    },
    fence() {
      if (ending === 'closed') return Promise.resolve();
      fenceCount += 1;
      const ref = `${fencePrefix}${fenceCount}`;
      return new Promise<void>((resolve) => {
        fences.push({ ref, resolve });
        try {
          write(`{"op":"ping","ref":"${ref}"}`);
        } catch {
          // closing under us: its close event ends every fence
        }
      });
    },
    retire() {
      if (retired) return retired;
      if (ending === 'closed') return (retired = Promise.resolve());
      ending = 'retiring';
      retired = upstream.fence().then(() => upstream.close());
      return retired;
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
      // A refusal with a code (a relay refusing the client's token or its connection) passes through.
      end(
        error instanceof AnodeError
          ? error
          : new UnavailableError(`the edge could not reach where ${key} is served; try again`),
      );
      events.onDialFailed(upstream, error);
    },
  );
  return upstream;
}
