import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

/** The parts of the `ws` library's receiver that tell whether a frame is half-read. */
interface ReceiverState {
  _bufferedBytes?: number;
  _fragments?: unknown[];
}

/**
 * Closes a socket whose sender started a frame (or a fragmented message) and did not finish it
 * within `timeoutMs`: without this, a client can send most of a frame and stall, holding up to
 * the frame cap in memory per connection for as long as it likes. `ws` does not expose
 * "a frame is half-read", so this reads its receiver's buffered byte count; if a future `ws`
 * hides it, any connection that received bytes but completed no frame for `timeoutMs` counts
 * as stalled instead (stricter, never looser).
 */
export function watchUnfinishedFrames(
  ws: WebSocket,
  socket: Duplex,
  timeoutMs: number,
  onStalled: () => void,
): () => void {
  const receiver = (ws as unknown as { _receiver?: ReceiverState })._receiver;
  let completed = 0;
  let messages = 0;
  let dataSinceFrame = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const partial = () =>
    receiver && typeof receiver._bufferedBytes === 'number'
      ? receiver._bufferedBytes > 0 || (receiver._fragments?.length ?? 0) > 0
      : dataSinceFrame;
  const onFrame = () => {
    completed += 1;
    dataSinceFrame = false;
  };
  const onMessage = () => {
    messages += 1;
    onFrame();
  };
  // Pings and pongs may come between the fragments of a message: while one is under way, only
  // its end is progress (a client pinging every few hundred ms held 50 KB unfinished for good).
  const fragmented = () => (receiver?._fragments?.length ?? 0) > 0;
  // `ws` handles each chunk synchronously in its own 'data' listener, registered before this one,
  // so by the time this runs every frame the chunk completed has been emitted.
  const arm = (seen: number, seenMessages: number) => {
    timer = setTimeout(() => {
      timer = undefined;
      if (!partial()) return;
      if (fragmented() ? messages === seenMessages : completed === seen) return onStalled();
      arm(completed, messages); // frames completed meanwhile, and another is under way: its own full window
    }, timeoutMs);
    timer.unref();
  };
  const onData = () => {
    dataSinceFrame = true;
    if (timer === undefined && partial()) arm(completed, messages);
  };
  ws.on('message', onMessage);
  ws.on('ping', onFrame);
  ws.on('pong', onFrame);
  socket.on('data', onData);
  return () => {
    clearTimeout(timer);
    socket.off('data', onData);
  };
}
