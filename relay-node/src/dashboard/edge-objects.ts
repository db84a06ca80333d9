/**
 * The edge's side of this relay's edge links: for every linked topic, its Durable Object's own
 * view, read from the Worker's `GET /v1/status?topic=` (clients connected to that object, and
 * the state of its link as the object sees it). Polled every `intervalMs` while `active` (a
 * request wakes a hibernating object, so only while a dashboard is open), at most MAX_TOPICS
 * topics, each request bounded by TIMEOUT_MS; the status shows the last answer (or the error).
 */
const MAX_TOPICS = 50;
const TIMEOUT_MS = 2_000;
const MAX_BODY_CHARS = 64 * 1024;

export interface EdgeObject {
  topic: string;
  edge: string;
  clients: number | null;
  /** The object's link state: open, catching-up, dialing, waiting, idle. */
  link: string | null;
  /** The relay (node id) the object's link is to. */
  relay: string | null;
  instance: string | null;
  checked_at: string;
  error: string | null;
}

type Links = () => Promise<{ topic: string; url: string }[]>;

async function readObject(topic: string, linkUrl: string): Promise<EdgeObject> {
  const edge = new URL(linkUrl).origin;
  const base = { topic, edge, checked_at: new Date().toISOString() };
  try {
    const response = await fetch(`${edge}/v1/status?topic=${encodeURIComponent(topic)}`, {
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const text = (await response.text()).slice(0, MAX_BODY_CHARS);
    if (!response.ok) throw new Error(`the edge answered ${response.status}`);
    const object = (JSON.parse(text) as { topic?: Record<string, unknown> }).topic ?? {};
    const link = (object.link ?? null) as { state?: unknown; relay?: unknown } | null;
    return {
      ...base,
      clients: typeof object.clients === 'number' ? object.clients : null,
      link: typeof link?.state === 'string' ? link.state : null,
      relay: typeof link?.relay === 'string' ? link.relay : null,
      instance: typeof object.instance === 'string' ? object.instance : null,
      error: null,
    };
  } catch (error) {
    return { ...base, clients: null, link: null, relay: null, instance: null, error: (error as Error).message };
  }
}

export function createEdgeObjects(options: { links: Links; intervalMs: number; active: () => boolean }) {
  let objects: EdgeObject[] = [];
  let timer: ReturnType<typeof setInterval> | undefined;
  let running = false;

  const poll = async () => {
    if (running || !options.active()) return;
    running = true;
    try {
      const links = (await options.links()).slice(0, MAX_TOPICS);
      objects = await Promise.all(links.map((l) => readObject(l.topic, l.url)));
    } catch {
      // The next round tries again; the last answer stays shown.
    } finally {
      running = false;
    }
  };

  return {
    start() {
      timer = setInterval(() => void poll(), options.intervalMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
    },
    list: () => objects,
  };
}
