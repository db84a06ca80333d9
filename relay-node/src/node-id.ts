import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isNodeId, randomNodeId } from '@anode/shared';
import { writePrivateFileDurably } from './private-files.ts';

/** This node's id (in every cursor it mints), made once and kept in the data folder. */
export async function loadNodeId(dataDir: string): Promise<string> {
  const path = join(dataDir, 'node-id');
  try {
    const id = (await readFile(path, 'utf8')).trim();
    if (isNodeId(id)) return id;
    throw new Error(`${path} does not hold a valid node id`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const id = randomNodeId();
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writePrivateFileDurably(path, `${id}\n`);
  return id;
}
