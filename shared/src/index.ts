export const PROTOCOL_VERSION = 1;
export * from './auth.ts';
export * from './close-codes.ts';
export * from './errors.ts';
export * from './frames.ts';
export * from './ids.ts';
export type * from './ports/message-store.ts';
export * from './topics.ts';
export { SeenIds } from './client/seen-ids.ts';
