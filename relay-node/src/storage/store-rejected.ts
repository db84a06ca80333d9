import { AnodeError } from '@anode/shared';

/**
 * The store refuses this one message for good (Cassandra: a mutation over its max_mutation_size):
 * trying again, later or from the spool, would fail the same way, while other messages are
 * stored. Not an outage, so a publish is refused with it instead of spooled, and a spooled
 * message that meets it is moved aside (spooling-store.ts). Only for a refusal that depends on
 * the message itself: one that would meet every write alike is an outage, never this.
 */
export class StoreRejectedError extends AnodeError {
  /**
   * The store decided it itself, from the message's own size against a limit it knows, without
   * asking its backend (Cassandra: the size check against the limits read at connect). Such a
   * refusal concerns that message alone for certain, so the spool's drain moves it aside at once
   * however many come in a row. False for a refusal relayed from the backend's answer (Cassandra's
   * "Rejected an oversized mutation", "Request is too big"): a refusal of a write the store
   * thought fitted may meet row after row (a limit it misread, nodes set differently), so a run of
   * them stops the drain as an outage (REFUSED_IN_A_ROW).
   */
  readonly certain: boolean;

  constructor(code: 'too_large', message: string, options?: ErrorOptions & { certain?: boolean }) {
    super(code, message, options);
    this.name = 'StoreRejectedError';
    this.certain = options?.certain === true;
  }
}

export const isStoreRejection = (error: unknown): error is StoreRejectedError => error instanceof StoreRejectedError;
