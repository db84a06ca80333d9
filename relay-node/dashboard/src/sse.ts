/**
 * Server-sent events over `fetch`, so the admin token travels in the Authorization header
 * (EventSource cannot set headers, and a token in the URL ends up in logs).
 */
export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Both streams send something at least every second or two (a `status` event, a tail's `ping`
 * comment): this long with no byte means the relay is frozen or the connection silently dead.
 */
export const IDLE_MS = 5_000;

/** The server answered with an error status; `message` is its own (`{error: {message}}`). */
export class StreamHttpError extends Error {
  override name = 'StreamHttpError';
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** No byte arrived for `idleMs`: the stream is given up and opened again. */
export class StreamStalledError extends Error {
  override name = 'StreamStalledError';
  constructor(idleMs: number) {
    super(`no data for ${idleMs / 1000} s`);
  }
}

export async function readSse(
  url: string,
  token: string | undefined,
  signal: AbortSignal,
  onEvent: (event: SseEvent) => void,
  idleMs = IDLE_MS,
): Promise<void> {
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (token) headers.authorization = `Bearer ${token}`;
  // A watchdog re-armed by every chunk: a frozen relay or a dead connection sends nothing and
  // closes nothing, and without it the page would wait on the read for ever, still saying "live".
  const watchdog = new AbortController();
  const forward = () => watchdog.abort(signal.reason);
  signal.addEventListener('abort', forward, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => watchdog.abort(new StreamStalledError(idleMs)), idleMs);
  };
  try {
    arm();
    const response = await fetch(url, { headers, signal: watchdog.signal, cache: 'no-store' });
    if (!response.ok || !response.body) {
      const body = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
      throw new StreamHttpError(response.status, body.error?.message ?? `HTTP ${response.status}`);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      arm();
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (data.length > 0) onEvent({ event, data: data.join('\n') });
      }
    }
  } catch (error) {
    // The stream rejects with a plain AbortError: say that the watchdog fired, and why.
    if (watchdog.signal.reason instanceof StreamStalledError) throw watchdog.signal.reason;
    throw error;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', forward);
  }
}

export type StreamState = 'open' | 'retrying' | 'unauthorized' | 'refused';

/** A refusal that retrying will not change: a 4xx other than "too many" or "timed out". */
const isFinal = (status: number) => status >= 400 && status < 500 && status !== 408 && status !== 429;

/**
 * Keep a stream open: reconnect with capped backoff until aborted. An auth failure (401, 403)
 * stops it as `unauthorized`, any other final refusal (a bad topic: 400) as `refused`, with the
 * server's message; a stall, a 429 or a 5xx is retried, with the reason as the detail.
 */
export function keepReading(
  url: string,
  token: () => string | undefined,
  onEvent: (event: SseEvent) => void,
  onState: (state: StreamState, detail?: string) => void,
  idleMs = IDLE_MS,
): () => void {
  const controller = new AbortController();
  void (async () => {
    let attempt = 0;
    while (!controller.signal.aborted) {
      let detail: string | undefined;
      try {
        await readSse(
          url,
          token(),
          controller.signal,
          (event) => {
            attempt = 0;
            onState('open');
            onEvent(event);
          },
          idleMs,
        );
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof StreamHttpError && (error.status === 401 || error.status === 403)) {
          return onState('unauthorized', error.message);
        }
        if (error instanceof StreamHttpError && isFinal(error.status)) return onState('refused', error.message);
        detail = error instanceof Error ? error.message : String(error);
      }
      if (controller.signal.aborted) return;
      onState('retrying', detail);
      const delay = Math.min(10_000, 500 * 2 ** attempt++);
      await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random() / 2)));
    }
  })();
  return () => controller.abort();
}
