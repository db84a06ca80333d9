import type { MetricsSample } from './status-schema.ts';

/** One interval's status and metrics, already serialized: every open stream sends the same text. */
export interface SharedStatus {
  at: number;
  /** The `/v1/status` object as JSON. */
  status: string;
  /** The metrics snapshot as JSON. */
  metrics: string;
}

export interface StatusFeed {
  /**
   * The status read now, for a new stream's first event: a page opened just after a change (a
   * peer forgotten) must show it, not the previous interval's status.
   */
  read(): Promise<SharedStatus>;
  /** Receive each interval's status until the returned leave; the feed runs only while someone listens. */
  join(listener: (status: SharedStatus) => void): () => void;
  stop(): void;
}

export interface StatusFeedOptions {
  /** The merged `/v1/status` object, as JSON text. */
  status: () => Promise<string>;
  metrics: () => Promise<unknown>;
  intervalMs: number;
}

/**
 * The status streams' one source: the status is read and serialized once per interval and
 * shared by every open stream. Read per stream, 100 open pages cost the relay 100 status reads
 * (an in-process request, redaction, JSON both ways) every second.
 */
export function createStatusFeed({ status, metrics, intervalMs }: StatusFeedOptions): StatusFeed {
  const listeners = new Set<(status: SharedStatus) => void>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;

  const read = async (): Promise<SharedStatus> => {
    const at = Date.now();
    const [text, snapshot] = await Promise.all([status(), metrics()]);
    return { at, status: text, metrics: JSON.stringify(snapshot) };
  };

  const tick = async () => {
    timer = undefined;
    if (listeners.size === 0) {
      running = false;
      return;
    }
    // A status that cannot be read sends nothing this interval: the pages see the stream stall.
    const shared = await read().catch(() => undefined);
    if (shared) for (const listener of listeners) listener(shared);
    if (listeners.size > 0 && running) timer = setTimeout(() => void tick(), intervalMs);
    else running = false;
  };

  return {
    read,
    join(listener) {
      listeners.add(listener);
      if (!running) {
        running = true;
        timer = setTimeout(() => void tick(), intervalMs);
      }
      return () => listeners.delete(listener);
    },
    stop() {
      clearTimeout(timer);
      timer = undefined;
      running = false;
      listeners.clear();
    },
  };
}

/**
 * One `status` event's data (a StatusEvent): the shared status and metrics texts around this
 * stream's own samples, so the large part is serialized once for all streams.
 */
export const encodeStatusEvent = (shared: SharedStatus, samples: MetricsSample[]): string =>
  `{"at":${shared.at},"status":${shared.status},"metrics":${shared.metrics},"samples":${JSON.stringify(samples)}}`;
