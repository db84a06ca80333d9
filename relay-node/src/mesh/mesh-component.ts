import type { ComponentFactory } from '../component.ts';

/** The libp2p mesh as a relay component (not built yet: a relay runs alone). */
export const createMeshComponent: ComponentFactory = async () => undefined;
