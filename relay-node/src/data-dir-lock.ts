import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { diskAdvice, ensurePrivateFile } from './private-files.ts';
import { sqlitePrimaryCode } from './storage/embedded/sqlite-schema.ts';

/**
 * One relay per data folder. Two relays started on one folder share its node id and clock lease,
 * so once the second one's lease start is behind them both mint the same cursors, and the store
 * keeps the first message under a (topic, cursor): measured without this lock, two relays on one
 * folder, 8 publishers posting 40,000 messages between them, acknowledged all 40,000 and stored
 * 36,240 and 37,054 (two runs).
 *
 * The lock is an exclusive SQLite transaction held open on `<data_dir>/lock` for the relay's
 * life: the operating system drops it when the process ends, however it ends (a SIGKILL or a
 * power cut leaves no stale lock behind), and it holds across processes and within one.
 */
export interface DataDirLock {
  readonly path: string;
  /** Give the folder up (idempotent). */
  release(): void;
}

export class DataDirInUseError extends Error {
  readonly dataDir: string;
  constructor(dataDir: string) {
    super(
      `the data folder ${dataDir} is in use by another relay (it holds ${join(dataDir, 'lock')}): ` +
        'give each relay its own data_dir (--data-dir), or stop the other one',
    );
    this.name = 'DataDirInUseError';
    this.dataDir = dataDir;
  }
}

/**
 * The connections holding a lock. A DatabaseSync that is garbage collected closes, and its lock
 * goes with it: a lock the caller did not keep a reference to was lost at the next collection
 * (the CI run of 2026-11-30 caught it in data-dir-lock.test.ts). Kept here until released.
 */
const holding = new Set<DatabaseSync>();
/**
 * The lock files this process holds (real paths). A second try within the process is refused
 * here, before anything opens the file: closing any descriptor of a file drops every POSIX lock
 * the process holds on it, so a failed second try released the first relay's lock.
 */
const held = new Set<string>();

/** Take the data folder for this relay, or throw DataDirInUseError. The folder must exist. */
export function lockDataDir(dataDir: string): DataDirLock {
  const path = join(dataDir, 'lock');
  const real = join(realpathSync(dataDir), 'lock');
  if (held.has(real)) throw new DataDirInUseError(dataDir);
  let db: DatabaseSync | undefined;
  try {
    ensurePrivateFile(path);
    db = new DatabaseSync(path, { timeout: 0 });
    db.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    db?.close();
    if (sqliteBusy(error)) throw new DataDirInUseError(dataDir);
    throw lockFailed(dataDir, path, error as Error);
  }
  let holds = true;
  const lock = db;
  holding.add(lock);
  held.add(real);
  return {
    path,
    release() {
      if (!holds) return;
      holds = false;
      holding.delete(lock);
      held.delete(real);
      lock.close();
    },
  };
}

/**
 * SQLite's own answer that another connection holds the lock (SQLITE_BUSY or SQLITE_LOCKED, any
 * extended code): by its code, not its words, as a file system error names the path, and a
 * data_dir named `…/locked` was taken for a folder in use.
 */
const sqliteBusy = (error: unknown) => {
  const primary = sqlitePrimaryCode(error);
  return (error as { code?: unknown }).code === 'ERR_SQLITE_ERROR' && (primary === 5 || primary === 6);
};

/**
 * Why the lock file could not be made or locked, naming it and what to do: SQLite's own words
 * ("database or disk is full", "unable to open database file") named no file.
 */
function lockFailed(dataDir: string, path: string, error: Error): Error {
  const advice =
    diskAdvice(error) ??
    (/unable to open/i.test(error.message)
      ? `cannot be opened: the folder must be readable and writable by the relay's user, and its path short enough for SQLite (${path.length} characters here; SQLite takes about 500)`
      : undefined);
  if (!advice) return error;
  return Object.assign(new Error(`the data folder ${dataDir} (its lock file ${path}) ${advice} [${error.message}]`), {
    cause: error,
    code: (error as NodeJS.ErrnoException).code,
  });
}
