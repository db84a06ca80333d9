import { LimitReachedError } from '@anode/shared';

/**
 * Open things (connections, streams) counted per key, refused at `limit` (0: no limit). `take`
 * throws `limit_reached` with `refusal(limit)`; `give` hands one back.
 */
export function createCounts(limit: number, refusal: (limit: number) => string) {
  const counts = new Map<string, number>();
  return {
    take(key: string): void {
      const open = counts.get(key) ?? 0;
      if (limit > 0 && open >= limit) throw new LimitReachedError(refusal(limit));
      counts.set(key, open + 1);
    },
    give(key: string): void {
      const open = (counts.get(key) ?? 1) - 1;
      if (open <= 0) counts.delete(key);
      else counts.set(key, open);
    },
  };
}

/**
 * Open WebSockets counted per credential (a token's subject, or a token that has none) and per
 * client address, so one credential or one host cannot take every socket (and every subscription
 * slot) the node has. A limit of 0 means no limit. `admit` throws `limit_reached` or returns the release to call when the socket closes.
 */
export interface ConnectionCaps {
  admit(token: string | undefined, address: string): () => void;
}

export function createConnectionCaps(limits: { perToken: number; perAddress: number }): ConnectionCaps {
  const refusal = (what: string) => (limit: number) =>
    `connection limit of ${limit} per ${what} reached; close a connection first`;
  const byToken = createCounts(limits.perToken, refusal('token'));
  const byAddress = createCounts(limits.perAddress, refusal('client address'));
  return {
    admit(token, address) {
      byAddress.take(address);
      if (token !== undefined) {
        try {
          byToken.take(token);
        } catch (error) {
          byAddress.give(address);
          throw error;
        }
      }
      let released = false;
      return () => {
        if (released) return;
        released = true;
        byAddress.give(address);
        if (token !== undefined) byToken.give(token);
      };
    },
  };
}
