import { LimitReachedError } from '@anode/shared';

/**
 * Open WebSockets counted per credential (a token's subject, or a token that has none) and per
 * client address, so one credential or one host cannot take every socket (and every subscription
 * slot) the node has. A limit of 0 means no limit. `admit` throws `limit_reached` or returns the release to call when the socket closes.
 */
export interface ConnectionCaps {
  admit(token: string | undefined, address: string): () => void;
}

export function createConnectionCaps(limits: { perToken: number; perAddress: number }): ConnectionCaps {
  const byToken = new Map<string, number>();
  const byAddress = new Map<string, number>();
  const take = (counts: Map<string, number>, key: string, limit: number, what: string) => {
    const open = counts.get(key) ?? 0;
    if (limit > 0 && open >= limit) {
      throw new LimitReachedError(`connection limit of ${limit} per ${what} reached; close a connection first`);
    }
    counts.set(key, open + 1);
  };
  const give = (counts: Map<string, number>, key: string) => {
    const open = (counts.get(key) ?? 1) - 1;
    if (open <= 0) counts.delete(key);
    else counts.set(key, open);
  };
  return {
    admit(token, address) {
      take(byAddress, address, limits.perAddress, 'client address');
      if (token !== undefined) {
        try {
          take(byToken, token, limits.perToken, 'token');
        } catch (error) {
          give(byAddress, address);
          throw error;
        }
      }
      let released = false;
      return () => {
        if (released) return;
        released = true;
        give(byAddress, address);
        if (token !== undefined) give(byToken, token);
      };
    },
  };
}
