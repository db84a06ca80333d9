import { AnodeError } from '@anode/shared';

/**
 * The store refuses this write for good (Cassandra: an invalid request, such as a mutation over
 * its max_mutation_size): trying again, later or from the spool, would fail the same way. Not an
 * outage, so a publish is refused with it instead of spooled, and a spooled message that meets
 * it is moved aside (spooling-store.ts). `too_large` when the message's size is the reason.
 */
export class StoreRejectedError extends AnodeError {
  constructor(code: 'too_large' | 'internal', message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = 'StoreRejectedError';
  }
}

export const isStoreRejection = (error: unknown): error is StoreRejectedError => error instanceof StoreRejectedError;
