import { accessSync, chmodSync, closeSync, constants, lstatSync, mkdirSync, openSync, statSync } from 'node:fs';
import { link, open, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * Files in the data folder hold secrets: `sources.json` and its journal `sources.log` (source
 * URLs and headers with credentials), `node-lease` (the token of this relay's node-id lease on
 * Cassandra), `peer-key` (the mesh identity), `node-id`, `mesh-peers.json` (who the mesh
 * peers are, and where), `mesh-sync.json` (which peers it synced with, and when), and the stores
 * (every message). They
 * are created owner-only (0600, their folder 0700), and on start any of them left readable by
 * others (made by an older version, or copied in) are tightened.
 */
export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/** The data folder's files that hold secrets, relative to it. */
const SECRET_FILES = [
  'node-id',
  'node-id.tmp',
  'peer-key',
  'peer-key.tmp',
  'sources.json',
  'sources.json.tmp',
  'sources.log',
  'node-lease',
  'mesh-peers.json',
  'mesh-peers.json.tmp',
  'mesh-sync.json',
  'mesh-sync.json.tmp',
  ...['messages.sqlite', 'spool/spool.sqlite'].flatMap((db) => [db, `${db}-wal`, `${db}-shm`, `${db}-journal`]),
];
const SECRET_DIRS = ['', 'spool'];

function tighten(path: string, mode: number, isDir: boolean): void {
  let stat;
  try {
    stat = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  // Never follow a link out of the folder; only tighten, never loosen.
  if (stat.isSymbolicLink() || stat.isDirectory() !== isDir) return;
  if ((stat.mode & 0o777 & ~mode) !== 0) chmodSync(path, stat.mode & mode);
}

/**
 * `mkdir -p`, for the data folder and the stores' folders in it. Node's own (`recursive: true`,
 * sync or not) never returns when a parent exists but cannot hold the new folder (a path under
 * `/proc`, a link to a folder that is gone): the folder's mkdir answers ENOENT, so it makes the
 * parent (EEXIST) and tries the folder again, forever, at full CPU; the sync one stops the event
 * loop, so not even SIGTERM ended the relay. Here a folder that still answers ENOENT once its
 * parent is there fails with that ENOENT.
 */
export function makeFolderSync(path: string, mode: number): void {
  const made = () => {
    try {
      mkdirSync(path, { mode });
    } catch (error) {
      // There already, as a folder (or a link to one): as `recursive: true` takes it.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || !isFolder(path)) throw error;
    }
  };
  try {
    return made();
  } catch (error) {
    const parent = dirname(path);
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || parent === path) throw error;
    makeFolderSync(parent, mode);
  }
  made(); // once: an ENOENT now is the folder's own
}

const danglingLink = (path: string) => {
  try {
    return lstatSync(path).isSymbolicLink() && !isFolder(path);
  } catch {
    return false;
  }
};

const isFolder = (path: string) => {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
};

/**
 * Make the data folder (0700) and tighten the secret files already in it (0600). A folder this
 * process may not change (owned by another user, typically root: a bind mount made by Docker or
 * by hand) fails here, with what to do, rather than at the first write.
 */
export function securePrivateDir(dataDir: string): void {
  try {
    makeFolderSync(dataDir, PRIVATE_DIR_MODE);
    for (const dir of SECRET_DIRS) tighten(join(dataDir, dir), PRIVATE_DIR_MODE, true);
    for (const file of SECRET_FILES) tighten(join(dataDir, file), PRIVATE_FILE_MODE, false);
    accessSync(dataDir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code === 'EEXIST' || code === 'ENOTDIR') && (error as NodeJS.ErrnoException).syscall === 'mkdir') {
      // A bare "EEXIST: file already exists, mkdir" did not say the path names a file.
      const at = (error as NodeJS.ErrnoException).path ?? dataDir;
      const what = danglingLink(at)
        ? `${at} in the data folder's path ${dataDir} is a link to a folder that is not there`
        : code === 'EEXIST'
          ? `the data folder ${dataDir} is a file, not a folder`
          : `a part of the data folder's path ${dataDir} is a file, not a folder`;
      throw Object.assign(
        new Error(`${what}: set data_dir to a folder (or a path not yet taken) [${(error as Error).message}]`, {
          cause: error,
        }),
        { code },
      );
    }
    if (code === 'ENOENT' && (error as NodeJS.ErrnoException).syscall === 'mkdir') {
      // Its parent is there (makeFolderSync made it) but takes no new folder: a bare "ENOENT: no
      // such file or directory, mkdir" said a thing was missing that was not.
      const at = (error as NodeJS.ErrnoException).path ?? dataDir;
      throw Object.assign(
        new Error(
          `cannot create the data folder ${dataDir}: ${dirname(at)} does not take new folders (a system ` +
            'folder such as /proc or /sys, or a link to a folder that is gone): set data_dir to a folder ' +
            `on a disk [${(error as Error).message}]`,
          { cause: error },
        ),
        { code },
      );
    }
    const advice = diskAdvice(error);
    if (advice) {
      throw Object.assign(
        new Error(`the data folder ${dataDir} ${advice} [${(error as Error).message}]`, { cause: error }),
        { code },
      );
    }
    if (code !== 'EPERM' && code !== 'EACCES') throw error;
    throw Object.assign(new Error(notOwnedMessage(dataDir, error as NodeJS.ErrnoException), { cause: error }), {
      code,
    });
  }
}

/**
 * What to do when the data folder's disk refuses a write, from the error (Node's errno codes, or
 * SQLite's words for the same): a full disk (space or inodes) or a read-only file system. These
 * said only "database or disk is full" or "EROFS: read-only file system, chmod …", naming no
 * folder and no way out. Undefined for any other error.
 */
export function diskAdvice(error: unknown): string | undefined {
  const { code, message = '' } = (error ?? {}) as NodeJS.ErrnoException;
  if (code === 'ENOSPC' || code === 'EDQUOT' || /disk is full|SQLITE_FULL/i.test(message)) {
    return 'is on a disk with no room left (space, inodes or quota): free some, or set data_dir to a folder on another disk';
  }
  if (code === 'EROFS' || /read-only file system/i.test(message)) {
    return 'is on a read-only file system: set data_dir to a folder on a writable disk';
  }
  if (/readonly database/i.test(message)) {
    return "cannot be written (a read-only file system, or a file the relay's user may not write)";
  }
  return undefined;
}

const ownedByUs = (path: string) => {
  try {
    return statSync(path).uid === process.getuid?.();
  } catch {
    return false;
  }
};

/** What to do about a data folder this process may not create or change. */
function notOwnedMessage(dataDir: string, error: NodeJS.ErrnoException): string {
  const uid = process.getuid?.();
  const user = uid === undefined ? "the relay's user" : `the relay's user (uid ${uid})`;
  const what =
    error.syscall === 'mkdir'
      ? `cannot create the data folder ${dataDir}: create it owned by ${user}`
      : error.syscall === 'access' && ownedByUs(dataDir)
        ? `the data folder ${dataDir} is not readable and writable by ${user}, who owns it: \`chmod 700 ${dataDir}\``
        : `the data folder ${dataDir} and its files must be owned by ${user}: chown them`;
  // The one place this is met most: a host folder bind-mounted on the image's /data.
  const docker = 'in the Docker image the relay is uid 1000: `chown -R 1000:1000 <host folder>`';
  return `${what}, or choose another data_dir (${docker}) [${error.message}]`;
}

/**
 * Create `path` empty and owner-only if it does not exist. SQLite gives its `-wal` and `-shm`
 * files the mode of the database file, so creating the database this way covers them too.
 */
export function ensurePrivateFile(path: string): void {
  closeSync(openSync(path, 'a', PRIVATE_FILE_MODE));
  tighten(path, PRIVATE_FILE_MODE, false);
}

/**
 * Make a private file that is made once and read on every start (`node-id`, `peer-key`): written
 * to a temporary file and synced, then linked into place and the folder synced. A power cut
 * right after the first start then leaves either no file (made again) or the whole file, never an
 * empty one that stops every later start. Linking, unlike a rename, never replaces a file that
 * is already there (EEXIST): a file made meanwhile by another process is kept, as `wx` kept it.
 */
export async function writePrivateFileDurably(path: string, data: string | Uint8Array): Promise<void> {
  const temporary = `${path}.tmp`;
  await writeFile(temporary, data, { mode: PRIVATE_FILE_MODE, flush: true });
  try {
    await link(temporary, path);
  } finally {
    await rm(temporary, { force: true });
  }
  await syncFolder(dirname(path));
}

/** Sync a folder, so that a file created, linked or renamed in it keeps its name after a power cut. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
