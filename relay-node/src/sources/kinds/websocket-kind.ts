import WebSocket from 'ws';
import { z } from 'zod';
import { positiveInt, timerMs } from '../../config-fields.ts';
import { requestHeaders } from '../definition.ts';
import { gaveUp } from '../publish-gate.ts';
import type { SourceKind } from '../source-kind.ts';
import { redactUrls } from '../../redact.ts';

const shape = {
  url: z.url({ protocol: /^wss?$/ }),
  headers: requestHeaders,
  /** Sent after each connect: a string as is, anything else as JSON. */
  subscribe: z.unknown().optional(),
  /** Ping this often; a connection that does not answer before the next ping is dropped. */
  heartbeat_ms: timerMs.default(15_000),
  /** Largest frame taken; a larger one drops the connection (the library stops reading it). */
  max_bytes: positiveInt.default(8 * 1024 * 1024),
  /**
   * Frames taken but not yet published (a slow store): at this many, or `max_pending_bytes` of
   * them, reading pauses until half have drained, so upstream waits in its own send buffer.
   */
  max_pending_frames: positiveInt.default(256),
  max_pending_bytes: positiveInt.default(16 * 1024 * 1024),
};
type WebSocketDefinition = z.infer<z.ZodObject<typeof shape>>;

/** Decodes UTF-8, throwing on bytes that are not (a leading byte order mark dropped). */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Holds a WebSocket to an upstream feed. Each text frame is one JSON payload; a frame that is
 * not JSON is a fault (counted) but keeps the connection. Frames are published in order, one at
 * a time; past the pending bound the socket stops being read (TCP pushes back on upstream). A
 * publish the core gave up on (10 × `timeout_ms`: a store that does not answer) drops the
 * connection like a failed one, so a stuck store cannot leave the socket paused for good.
 * Reconnects are the core's job: this driver reports `down` and the core calls `run` again
 * after a back-off with jitter; the frames a dropped connection had queued are not published,
 * and are reported lost (`io.lost`), as is a frame whose publish failed (the store refused it),
 * unless the core gave it up (the core counted that one).
 */
export const websocketKind: SourceKind = {
  kind: 'websocket',
  shape,
  create(definition, io) {
    const def = definition as unknown as WebSocketDefinition;
    let socket: WebSocket | undefined;
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    let chain = Promise.resolve();
    const shownUrl = redactUrls(def.url);

    const drop = (ws: WebSocket, error: Error) => {
      if (socket !== ws) return;
      socket = undefined;
      clearInterval(heartbeat);
      ws.terminate();
      io.down(error);
    };

    return {
      mode: 'stream',
      run(signal) {
        return new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(def.url, { headers: def.headers, maxPayload: def.max_bytes });
          socket = ws;
          // Until 'open', a failure fails the connect (run rejects); from then on, a failure is a drop
          // (io.down). The socket's readyState cannot tell them apart: on a bad frame the library
          // moves an open socket to CLOSING before it emits 'error'.
          let opened = false;
          const refuse = (error: Error) => {
            if (socket !== ws) return;
            socket = undefined;
            signal.removeEventListener('abort', onAbort);
            ws.terminate();
            reject(error);
          };
          const onAbort = () => refuse(new Error(`connect to ${shownUrl} timed out`));
          signal.addEventListener('abort', onAbort, { once: true });
          ws.on('error', (error: Error & { code?: string }) => {
            if (!opened) return refuse(error);
            if (error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
              return drop(ws, new Error(`frame from ${shownUrl} exceeds max_bytes (${def.max_bytes} bytes)`));
            }
            drop(ws, error);
          });
          ws.once('unexpected-response', (_request, response) => {
            refuse(new Error(`HTTP ${response.statusCode} on WebSocket upgrade`));
          });
          ws.once('open', () => {
            opened = true;
            signal.removeEventListener('abort', onAbort);
            if (def.subscribe !== undefined) {
              ws.send(typeof def.subscribe === 'string' ? def.subscribe : JSON.stringify(def.subscribe));
            }
            let alive = true;
            ws.on('pong', () => (alive = true));
            heartbeat = setInterval(() => {
              // A paused socket is not read, so its pong cannot arrive: the wait is ours.
              if (ws.isPaused) return;
              if (!alive) return drop(ws, new Error('heartbeat: no pong'));
              alive = false;
              ws.ping();
            }, def.heartbeat_ms);
            heartbeat.unref();
            resolve();
          });
          let pending = 0;
          let pendingBytes = 0;
          let skipped = 0;
          ws.on('message', (data) => {
            if (socket !== ws) return;
            // A text frame's UTF-8 the library checked (a bad one drops the connection); a binary
            // frame's bytes are checked here, never repaired into U+FFFD and published changed.
            // Both drop a leading byte order mark, as an http answer does: a text frame kept it
            // (String(data)), and JSON.parse refused every frame of an upstream that sends one.
            let text: string;
            try {
              text = strictUtf8.decode(data as Buffer);
            } catch {
              io.fault(new Error(`binary frame from ${shownUrl} is not valid UTF-8`));
              return;
            }
            let payload: unknown;
            try {
              payload = JSON.parse(text);
            } catch {
              io.fault(new SyntaxError(`invalid JSON frame from ${shownUrl}`));
              return;
            }
            const bytes = Buffer.isBuffer(data) ? data.length : text.length;
            pending += 1;
            pendingBytes += bytes;
            if (!ws.isPaused && (pending >= def.max_pending_frames || pendingBytes >= def.max_pending_bytes)) {
              ws.pause();
              io.log.debug({ pending, pending_bytes: pendingBytes }, 'publishing behind upstream: reading paused');
            }
            // Frames are ingested in order; a failed publish (one the core gave up on included:
            // a store that does not answer) drops the connection to retry. Once this connection
            // is dropped (or closed), its queued frames are skipped, and said so. The frame whose
            // publish failed is lost too: counted here, unless the gate gave it up (counted there).
            chain = chain
              .then(() => (socket === ws ? io.emit(payload) : void (skipped += 1)))
              .catch((error: Error) => {
                if (!gaveUp(error)) io.lost(1);
                drop(ws, error);
              })
              .finally(() => {
                pending -= 1;
                pendingBytes -= bytes;
                if (pending === 0 && skipped > 0) {
                  io.log.warn({ frames: skipped }, 'frames queued on a dropped connection: not published');
                  io.lost(skipped); // counted in dropped_publishes: the payloads are gone
                  skipped = 0;
                }
                const drained = pending <= def.max_pending_frames / 2 && pendingBytes <= def.max_pending_bytes / 2;
                if (ws.isPaused && drained && socket === ws) {
                  ws.resume();
                  io.log.debug({ pending, pending_bytes: pendingBytes }, 'reading resumed');
                }
              });
          });
          ws.once('close', (code) => {
            const error = new Error(`closed by upstream (${code})`);
            if (opened) drop(ws, error);
            else refuse(error);
          });
        });
      },
      close() {
        const ws = socket;
        socket = undefined;
        clearInterval(heartbeat);
        ws?.terminate();
      },
    };
  },
};
