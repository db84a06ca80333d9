/** Config keys of the libp2p mesh (none until the mesh lands). */
export const meshConfigShape = {};
