/**
 * Server-sent events over `fetch`, so the admin token travels in the Authorization header
 * (EventSource cannot set headers, and a token in the URL ends up in logs).
 */
export interface SseEvent {
  event: string;
  data: string;
}

export class UnauthorizedError extends Error {
  override name = 'UnauthorizedError';
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export async function readSse(
  url: string,
  token: string | undefined,
  signal: AbortSignal,
  onEvent: (event: SseEvent) => void,
): Promise<void> {
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, { headers, signal, cache: 'no-store' });
  if (response.status === 401 || response.status === 403) {
    const body = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
    throw new UnauthorizedError(response.status, body.error?.message ?? response.statusText);
  }
  if (!response.ok || !response.body) throw new Error(`${url}: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
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
}

/** Keep a stream open: reconnect with capped backoff until aborted; auth failures stop it. */
export function keepReading(
  url: string,
  token: () => string | undefined,
  onEvent: (event: SseEvent) => void,
  onState: (state: 'open' | 'retrying' | 'unauthorized', detail?: string) => void,
): () => void {
  const controller = new AbortController();
  void (async () => {
    let attempt = 0;
    while (!controller.signal.aborted) {
      try {
        await readSse(url, token(), controller.signal, (event) => {
          attempt = 0;
          onState('open');
          onEvent(event);
        });
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof UnauthorizedError) return onState('unauthorized', error.message);
      }
      if (controller.signal.aborted) return;
      onState('retrying');
      const delay = Math.min(10_000, 500 * 2 ** attempt++);
      await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random() / 2)));
    }
  })();
  return () => controller.abort();
}
