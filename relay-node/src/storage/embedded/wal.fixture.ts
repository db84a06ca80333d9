import { closeSync, openSync, readSync } from 'node:fs';

/**
 * The salt of a database's write-ahead log (bytes 16-23 of `<path>-wal`'s header): SQLite draws a
 * new one each time it starts the log over, so a changed salt says the log was started over.
 * For tests.
 */
export function logSalt(path: string): string {
  const fd = openSync(`${path}-wal`, 'r');
  try {
    const header = Buffer.alloc(8);
    readSync(fd, header, 0, 8, 16);
    return header.toString('hex');
  } finally {
    closeSync(fd);
  }
}
