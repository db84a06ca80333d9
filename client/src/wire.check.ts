// Compile-time only (typecheck, never built or run): the client's plain wire types must stay the
// protocol's. An Envelope must convert both ways; every frame the client reads must be one the
// protocol defines (a frame the protocol adds later is ignored by the client, not mistyped).
import type { Envelope as ProtocolEnvelope, ServerFrame as ProtocolFrame } from '../../shared/src/frames.ts';
import type { Envelope, ServerFrame } from './wire.ts';

type Assert<T extends true> = T;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export type EnvelopeIsTheProtocols = Assert<Same<Envelope, ProtocolEnvelope>>;
export type FramesAreTheProtocols = Assert<ServerFrame extends ProtocolFrame ? true : false>;
