import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/**
 * For tests of files that must survive a power cut: records, on the real files, which folders
 * FileHandle.sync() was called on from now until the test ends. `synced()` says whether `dir`
 * was among them.
 */
export async function watchFolderSyncs(t: TestContext, dir: string): Promise<{ synced(): boolean }> {
  const probe = await open(join(dir, '.sync-probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { sync(): Promise<void> };
  await probe.close();
  const { sync } = proto;
  t.after(() => Object.assign(proto, { sync }));
  const folder = (await stat(dir)).ino;
  const inodes: number[] = [];
  proto.sync = async function (this: { stat(): Promise<{ ino: number }> }) {
    inodes.push((await this.stat()).ino);
    return sync.call(this);
  };
  return { synced: () => inodes.includes(folder) };
}
