import { LimitReachedError, MAX_WAITING_PINGS } from '@anode/shared';
import type { Upstream } from './upstream.ts';

/**
 * Client pings waiting for their fences; past it a ping is refused (a tight loop of pings grows
 * nothing). One below what a relay or a topic's object lets wait per socket (MAX_WAITING_PINGS): an upstream
 * being retired adds a fence of its own, and a fence refused there with `limit_reached` would be
 * taken as answered, letting pongs through before the frames they follow.
 */
export const EDGE_WAITING_PINGS = MAX_WAITING_PINGS - 1;

/**
 * How a client connection keeps its pongs in order (PROTOCOL.md: a ping answered means every
 * frame before it was). It knows which upstreams were sent a frame since their last fence; a pong
 * waits for a fence on each of them (upstream.ts), and for the pongs before it. It holds only
 * open upstreams and retiring ones until they close: one that ends leaves, so what it holds stays
 * bounded by the upstreams the connection keeps, however many topics it publishes to.
 */
export interface PingFences {
  /** A frame was forwarded to this upstream. */
  sent(upstream: Upstream): void;
  /** It is being retired: a ping waits for it to close, when it had frames not fenced yet. */
  retire(upstream: Upstream): void;
  /** It ended (lost, or it never opened): what it had not answered was refused. */
  ended(upstream: Upstream): void;
  /**
   * Run `answer` once every frame forwarded before now was handled: at once when no upstream was
   * sent anything since the last fence and no pong waits. Throws `limit_reached` when
   * EDGE_WAITING_PINGS already wait.
   */
  pong(answer: () => void): void;
  /** Upstreams held here (unfenced and retiring). */
  held(): number;
  /** The client left: close every upstream held here. */
  close(): void;
}

export function createPingFences(): PingFences {
  /** Open upstreams sent a frame since their last fence. */
  const unfenced = new Set<Upstream>();
  /** Upstreams retired while unfenced, until they have closed. */
  const retiring = new Map<Upstream, Promise<void>>();
  let waiting = 0;
  let pongs: Promise<unknown> = Promise.resolve();

  return {
    sent: (upstream) => void unfenced.add(upstream),
    retire(upstream) {
      const closed = upstream.retire();
      if (!unfenced.delete(upstream)) return;
      retiring.set(upstream, closed);
      void closed.then(() => retiring.delete(upstream));
    },
    ended(upstream) {
      unfenced.delete(upstream);
      retiring.delete(upstream);
    },
    pong(answer) {
      if (unfenced.size === 0 && retiring.size === 0 && waiting === 0) return answer();
      if (waiting >= EDGE_WAITING_PINGS) {
        throw new LimitReachedError(
          `${EDGE_WAITING_PINGS} pings already wait for earlier frames; wait for their pongs`,
        );
      }
      const fences = [...[...unfenced].map((upstream) => upstream.fence()), ...retiring.values()];
      unfenced.clear();
      waiting += 1;
      pongs = Promise.all([pongs, ...fences]).then(() => {
        waiting -= 1;
        answer();
      });
    },
    held: () => unfenced.size + retiring.size,
    close() {
      for (const upstream of [...unfenced, ...retiring.keys()]) upstream.close();
      unfenced.clear();
      retiring.clear();
    },
  };
}
