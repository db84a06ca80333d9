import { backoffMs } from '@anode/shared';
import type { EdgeConfig } from '../config.ts';
import type { LinkStore } from './link-store.ts';

/**
 * Asking a relay to dial this Durable Object: `POST <relay>/v1/edge/dial?topic=…&edge=<origin>`
 * with the link secret. Relays are tried in turn starting from the last one that called back; a
 * relay that cannot be reached, refuses, or says yes but never calls back within LINK_WAIT_MS
 * moves the dialer on to the next, with jittered exponential backoff up to LINK_RETRY_MAX_MS.
 */
export interface DialerDeps {
  store: LinkStore;
  config: EdgeConfig;
  topic: () => string;
  /** Runs after every attempt (to set the next alarm). */
  settled: () => Promise<void>;
}

export function createDialer({ store, config, topic, settled }: DialerDeps) {
  let attempt = 0;
  let dialing = false;
  let awaitingCallback = false;
  let nextDialAt = 0;
  let relay: string | undefined;
  let dials = 0;

  // Only the configured origin: one taken from a request's Host would let anyone who can reach
  // the Worker have relays dial (and present the link secret to) a host of their choosing.
  const origin = () => config.EDGE_URL;

  const backOff = () => {
    attempt += 1;
    nextDialAt = Date.now() + backoffMs(Math.min(attempt, 16), 250, config.LINK_RETRY_MAX_MS);
  };

  return {
    get relay() {
      return relay;
    },
    get dialing() {
      return dialing;
    },
    get dials() {
      return dials;
    },

    /** Send a dial request now, unless one is in flight or the backoff says wait. */
    async dial(): Promise<void> {
      const relays = config.RELAY_URLS;
      const here = origin();
      if (dialing || Date.now() < nextDialAt || relays.length === 0 || !config.LINK_SECRET || !here) return;
      dialing = true;
      if (awaitingCallback) attempt += 1; // that relay said yes but never called: try the next
      awaitingCallback = false;
      const target = relays[(Number(store.meta.get('relay') ?? 0) + attempt) % relays.length] as string;
      dials += 1;
      try {
        const query = `topic=${encodeURIComponent(topic())}&edge=${encodeURIComponent(here)}`;
        const response = await fetch(`${target}/v1/edge/dial?${query}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${config.LINK_SECRET}` },
        });
        await response.body?.cancel();
        if (response.status !== 202) throw new Error(`relay answered ${response.status}`);
        relay = target;
        awaitingCallback = true;
        nextDialAt = Date.now() + config.LINK_WAIT_MS; // ask again if no call back by then
      } catch {
        backOff();
      } finally {
        dialing = false;
        await settled();
      }
    },

    /** The relay called back: start afresh next time, from this relay. */
    connected(): void {
      attempt = 0;
      awaitingCallback = false;
      nextDialAt = 0;
      const index = relay === undefined ? -1 : config.RELAY_URLS.indexOf(relay);
      if (index >= 0) store.meta.set('relay', String(index));
    },

    /** When the next dial may go out (undefined while one is in flight: it reschedules itself). */
    due(now: number): number | undefined {
      return dialing ? undefined : Math.max(nextDialAt, now);
    },
  };
}
