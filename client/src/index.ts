export { AnodeError, type ErrorCode } from '../../shared/src/errors.ts';
export { backoffDelay } from './backoff.ts';
export type { Ack, ClientEvents, ClientOptions, PublishOptions, Subscription } from './client.ts';
export { AnodeClient, createClient } from './client.ts';
export type { Envelope } from './wire.ts';
