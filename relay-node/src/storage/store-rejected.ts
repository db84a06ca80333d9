import { AnodeError } from '@anode/shared';

/**
 * The store refuses this one message for good (Cassandra: a mutation over its max_mutation_size):
 * trying again, later or from the spool, would fail the same way, while other messages are
 * stored. Not an outage, so a publish is refused with it instead of spooled, and a spooled
 * message that meets it is moved aside (spooling-store.ts). Only for a refusal that depends on
 * the message itself: one that would meet every write alike is an outage, never this.
 */
export class StoreRejectedError extends AnodeError {
  constructor(code: 'too_large', message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = 'StoreRejectedError';
  }
}

export const isStoreRejection = (error: unknown): error is StoreRejectedError => error instanceof StoreRejectedError;
