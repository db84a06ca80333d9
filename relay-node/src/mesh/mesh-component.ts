import type { ComponentFactory } from '../component.ts';
import { createMesh } from './mesh.ts';
import { meshEnabled } from './mesh-config.ts';

/** The libp2p relay mesh as a relay component; none unless the config turns the mesh on. */
export const createMeshComponent: ComponentFactory = async (context) => {
  if (!meshEnabled(context.config)) return undefined;
  const mesh = await createMesh(context);
  return { name: 'mesh', ...mesh };
};
