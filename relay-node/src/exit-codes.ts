/**
 * How a relay process ends, as its exit status: supervisors (systemd, Docker, `npm start`) and
 * scripts tell a failed start from lost output from a crash by these. Documented in docs/relay.md.
 */
export const EXIT_CODES = {
  /** Stopped on SIGTERM or SIGINT, everything flushed. */
  ok: 0,
  /** A shutdown that failed or took longer than `shutdown_grace_ms`. */
  failed: 1,
  /** Bad command line or config: nothing was started. */
  usage: 2,
  /** The node could not start (a port in use, a store that cannot open): what had started is stopped. */
  start_failed: 3,
  /** Standard output is gone (its reader exited): the node stops rather than run unseen. */
  output_lost: 4,
} as const;
