import {
  CLOSE_CODES,
  type CloseReason,
  encodeServerFrame,
  randomId,
  type ServerFrame,
  toAnodeError,
} from '@anode/shared';

/**
 * Client sockets of one TopicHub, on the WebSocket Hibernation API: each socket's state lives in
 * its attachment (so it survives hibernation) and is cached per instance. Nothing here waits on a
 * socket: workerd has no `bufferedAmount` (workerd#988), so a send never blocks or measures.
 */
export interface ClientState {
  id: string;
  /** May publish to this topic (the token's `pub` covers it). */
  pub: boolean;
  /** The token's subject: the source of publishes that name none. */
  subject?: string;
  /** The token's `anode.src`: source patterns it may publish as. */
  src?: string[];
  /** Token expiry, seconds since the epoch. */
  exp?: number;
  subscribed: boolean;
  /** False while a resume is catching up: live fan-out skips the socket until it is done. */
  live: boolean;
  /** Bumped by every sub/unsub, so a catch-up that was overtaken stops. */
  gen: number;
  /** Publish token bucket. */
  tokens: number;
  at: number;
}

export const CLIENT_TAG = 'client';

export function createClients(ctx: DurableObjectState) {
  const cache = new WeakMap<WebSocket, ClientState>();

  const open = () => ctx.getWebSockets(CLIENT_TAG).filter((ws) => ws.readyState === WebSocket.OPEN);

  const clients = {
    accept(init: Pick<ClientState, 'pub' | 'subject' | 'src' | 'exp' | 'tokens'>): {
      client: WebSocket;
      server: WebSocket;
    } {
      const pair = new WebSocketPair();
      const [client, server] = [pair[0], pair[1]];
      ctx.acceptWebSocket(server, [CLIENT_TAG]);
      clients.save(server, { id: randomId(), subscribed: false, live: false, gen: 0, at: Date.now(), ...init });
      return { client, server };
    },

    state(ws: WebSocket): ClientState {
      let state = cache.get(ws);
      if (!state) cache.set(ws, (state = ws.deserializeAttachment() as ClientState));
      return state;
    },

    save(ws: WebSocket, state: ClientState): void {
      cache.set(ws, state);
      ws.serializeAttachment(state);
    },

    update(ws: WebSocket, change: Partial<ClientState>): ClientState {
      const next = { ...clients.state(ws), ...change };
      clients.save(ws, next);
      return next;
    },

    /** Send a frame; false when the socket is gone. */
    send(ws: WebSocket, frame: string): boolean {
      try {
        ws.send(frame);
        return true;
      } catch {
        return false; // closed under us: its close event cleans up
      }
    },

    frame(ws: WebSocket, frame: ServerFrame): void {
      clients.send(ws, encodeServerFrame(frame));
    },

    error(ws: WebSocket, error: unknown, ref: string | undefined): void {
      const anode = toAnodeError(error);
      if (anode.code === 'internal') console.error('edge: internal error', error);
      clients.frame(ws, { op: 'err', code: anode.code, message: anode.message, ...(ref === undefined ? {} : { ref }) });
    },

    close(ws: WebSocket, reason: CloseReason, message: string): void {
      try {
        ws.close(CLOSE_CODES[reason], message);
      } catch {
        // already closing
      }
    },

    /** Every open client socket. */
    all: open,

    count(): number {
      return open().length;
    },

    /** Send a `msg` frame to every live subscriber; returns how many got it. */
    fanOut(frame: string): number {
      let sent = 0;
      for (const ws of open()) {
        const state = clients.state(ws);
        if (state.subscribed && state.live && clients.send(ws, frame)) sent += 1;
      }
      return sent;
    },

    /** Close sockets whose token expired; returns the earliest expiry still ahead (ms), if any. */
    expire(now = Date.now()): number | undefined {
      let next: number | undefined;
      for (const ws of open()) {
        const exp = clients.state(ws).exp;
        if (exp === undefined) continue;
        if (exp * 1000 <= now) clients.close(ws, 'auth_expired', 'token expired');
        else next = Math.min(next ?? Infinity, exp * 1000);
      }
      return next;
    },
  };
  return clients;
}

export type Clients = ReturnType<typeof createClients>;
