// A process a test starts in its own process group (a Cassandra JVM, `detached` so that a
// terminal's Ctrl-C reaches only the test) outlives the test's process when that one is killed
// with SIGKILL, runs out of memory or crashes: no exit hook runs then. An orphaned Cassandra kept
// its ports and over a gigabyte of memory until someone noticed. A watcher outside both ends it.
import { spawn } from 'node:child_process';

/** How often the watcher looks, in seconds: an orphan lives at most about this long. */
export const WATCH_EVERY_S = 2;

/**
 * Kills `pid` (SIGKILL) once the process `ownerPid` (by default this one) is gone, from a small
 * `sh` loop of its own that holds nothing of ours open. The loop ends by itself when `pid` exits
 * first, so a stopped child leaves no watcher behind.
 */
export function dieWithOwner(pid: number, ownerPid = process.pid): void {
  const loop =
    'while kill -0 "$1" 2>/dev/null; do kill -0 "$2" 2>/dev/null || exit 0; sleep "$3"; done; kill -9 "$2" 2>/dev/null; exit 0';
  const watcher = spawn(
    'sh',
    ['-c', loop, 'anode-die-with-owner', String(ownerPid), String(pid), String(WATCH_EVERY_S)],
    {
      detached: true,
      stdio: 'ignore',
    },
  );
  watcher.on('error', () => {}); // no sh: the exit hooks still cover everything but SIGKILL
  watcher.unref();
}
