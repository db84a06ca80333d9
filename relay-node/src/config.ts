import { readFileSync } from 'node:fs';
import { DEFAULT_MAX_MESSAGE_BYTES, ENVELOPE_OVERHEAD_BYTES } from '@anode/shared';
import { z } from 'zod';
import {
  bool,
  intIn,
  jwtSecret,
  list,
  nonNegativeInt,
  port,
  positiveInt,
  timerMs,
  timerOrZeroMs,
} from './config-fields.ts';
import { meshConfigShape, openMeshRefusal } from './mesh/mesh-config.ts';
import { edgeConfigShape } from './edge/edge-config.ts';
import { cassandraConfigShape } from './storage/cassandra/cassandra-config.ts';
import { sourcesConfigShape } from './sources/sources-config.ts';
import { unreadableFileHint } from './unreadable-file.ts';
import { listenAddressProblem, validHost } from './config-addresses.ts';

/**
 * Relay configuration: parsed once, from (lowest to highest precedence) defaults, a JSON config
 * file, the environment (`ANODE_<KEY>`), and command-line flags (`--<key-with-dashes>`). This is
 * the only module that reads the environment. Invalid values are refused with the key's name and
 * where the value came from.
 */
/** workerd takes WebSocket messages up to 32 MiB, and edge link history pages carry one message at least. */
const MAX_MESSAGE_BYTES_CEILING = 16 * 1024 * 1024;

export const configSchema = z.object({
  host: z
    .string()
    .min(1)
    .refine(validHost, {
      error: (issue) =>
        `${String(issue.input)} is neither an IP address nor a host name (an IPv6 address goes without brackets)`,
    })
    .default('127.0.0.1')
    .describe('address to listen on'),
  port: port.default(8080).describe('HTTP and WebSocket port (0 picks a free one)'),
  data_dir: z.string().min(1).default('.data/relay').describe('folder for the embedded store and the node id'),
  store: z
    .enum(['embedded', 'cassandra'])
    .default('embedded')
    .describe('message store: embedded (SQLite in data_dir) or cassandra'),
  log_level: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe('JSON log level: fatal, error, warn, info, debug, trace or silent'),
  store_fsync: bool.default(true).describe('fsync every commit (power-loss safe); false is still crash safe'),
  jwt_secret: jwtSecret
    .optional()
    .describe('HS256 secret (at least 32 characters); setting it (or public keys) turns auth on'),
  jwt_public_keys: list(z.string().min(1))
    .default([])
    .describe('comma-separated PEM (SPKI) files of Ed25519/P-256 public keys (EdDSA/ES256 tokens)'),
  jwt_audience: list(z.string().min(1))
    .default([])
    .describe(
      "comma-separated audiences: a token's aud must name one of them; unset, a token that carries an aud is refused (an issuer that sets aud needs this set)",
    ),
  cors_origins: list(z.string().min(1))
    .default([])
    .describe('origins allowed to call the HTTP API from a browser (comma-separated; * for any); none by default'),
  max_message_bytes: intIn(1, MAX_MESSAGE_BYTES_CEILING, 'at most 16 MiB (an edge link frame must carry one)')
    .default(DEFAULT_MAX_MESSAGE_BYTES)
    .describe(
      'largest message accepted: its data, serialized (larger: too_large; at most 16 MiB); every inner limit is above it',
    ),
  max_frame_bytes: positiveInt
    .optional()
    .describe('largest WebSocket frame accepted (default: max_message_bytes + 64 KiB; not below it + 4 KiB)'),
  max_body_bytes: positiveInt
    .optional()
    .describe('largest HTTP body accepted (default: 4 MiB or max_message_bytes + 64 KiB; not below it + 4 KiB)'),
  publish_rate: positiveInt
    .default(1000)
    .describe('publishes per second per connection (HTTP: per client address and token subject)'),
  publish_burst: positiveInt
    .default(2000)
    .describe(
      'publish burst allowance (an HTTP body of more messages than this is refused too_large; any array body past 1,000 messages is bad_frame first)',
    ),
  max_subscriptions: positiveInt.default(100).describe('subscriptions per connection (past it: limit_reached)'),
  max_connections_per_token: nonNegativeInt
    .default(1_000)
    .describe('open WebSockets per token subject (0 = no limit; past it: 429 limit_reached)'),
  max_connections_per_address: nonNegativeInt
    .default(1_000)
    .describe(
      'open WebSockets per client address (0 = no limit; past it: 429 limit_reached); TCP connections of any kind past it + 64 are closed unanswered',
    ),
  http_keep_alive_ms: timerMs
    .default(65_000)
    .describe(
      'an idle kept-alive HTTP connection is closed after this long; keep it above the idle timeout of a proxy or load balancer in front (often 60 s), or it may send a request on a connection the relay is closing',
    ),
  client_ping_ms: timerOrZeroMs
    .default(30_000)
    .describe(
      'every this long each client WebSocket is pinged; one that has not answered the previous ping is dropped (a client gone without a close, e.g. behind a NAT that forgot it; 0 = never)',
    ),
  frame_timeout_ms: timerMs
    .default(10_000)
    .describe('a WebSocket handshake, request headers or a started frame left unfinished this long: closed (4003)'),
  metrics_token: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe('bearer token that may read /metrics and /v1/status (the admin token may too)'),
  max_send_buffer_bytes: positiveInt
    .default(8 * 1024 * 1024)
    .describe(
      'unsent bytes before a subscriber or an edge link is cut off as too slow (4001); at least two of the largest messages (max_message_bytes), whatever is set',
    ),
  retention_max_age_ms: nonNegativeInt
    .default(7 * 24 * 3600 * 1000)
    .describe('delete messages older than this (0 = keep; default: 7 days)'),
  retention_max_messages: nonNegativeInt
    .default(100_000)
    .describe('keep at most this many messages per topic (0 = no limit)'),
  retention_sweep_ms: timerMs
    .default(60_000)
    .describe('longest time between retention sweeps (sooner when a topic outgrows its limit)'),
  shutdown_grace_ms: timerMs.default(5_000).describe('how long a graceful shutdown may take'),
  ...cassandraConfigShape,
  ...meshConfigShape,
  ...sourcesConfigShape,
  ...edgeConfigShape,
});

type ParsedConfig = z.infer<typeof configSchema>;
/** The limits derived from max_message_bytes when not given (see messageLimits). */
type DerivedKeys = 'max_frame_bytes' | 'max_body_bytes' | 'mesh_max_message_bytes';
export type RelayConfig = Omit<ParsedConfig, DerivedKeys> & { [K in DerivedKeys]: number };

/**
 * The one largest message (PROTOCOL.md "Limits") and the limits behind it: a WebSocket frame, an
 * HTTP body and a gossip message must each carry any message the node accepts, envelope and all.
 * Unset, they follow max_message_bytes; set below it (plus the envelope), the config is refused.
 */
function messageLimits(config: ParsedConfig): RelayConfig {
  const max = config.max_message_bytes;
  const floor = max + ENVELOPE_OVERHEAD_BYTES;
  const derived = max + 64 * 1024;
  const limits = {
    max_frame_bytes: config.max_frame_bytes ?? derived,
    max_body_bytes: config.max_body_bytes ?? Math.max(4 * 1024 * 1024, derived),
    mesh_max_message_bytes: config.mesh_max_message_bytes ?? derived,
  };
  for (const [key, value] of Object.entries(limits)) {
    if (value < floor) {
      throw new ConfigError(
        `invalid config: ${key} (${value}) is below max_message_bytes (${max}) plus ${ENVELOPE_OVERHEAD_BYTES} bytes ` +
          'of envelope: a message the node accepts could not pass it; raise it or lower max_message_bytes',
      );
    }
  }
  return { ...config, ...limits };
}
export const CONFIG_KEYS = Object.keys(configSchema.shape) as (keyof RelayConfig)[];

/** Keys whose value is a list (a repeated flag adds to it). */
export function isListKey(key: string): boolean {
  const defaults = configSchema.parse({}) as Record<string, unknown>;
  return Array.isArray(defaults[key]);
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Origin = 'default' | 'config file' | 'environment' | 'secret file' | 'command line';

/**
 * Keys holding a secret: each may also come from a file named by `ANODE_<KEY>_FILE` (a Docker or
 * Kubernetes secret), so it need not sit in the environment, where `docker inspect` and
 * `/proc/<pid>/environ` show it. Not `mesh_key`: `ANODE_MESH_KEY_FILE` is the variable of its
 * own key `mesh_key_file` (a swarm.key file), which already keeps the key out of the environment.
 */
export const SECRET_KEYS = [
  'jwt_secret',
  'admin_token',
  'metrics_token',
  'edge_link_secret',
  'cassandra_password',
] as const;

export interface ConfigSources {
  flags?: Record<string, string | boolean | undefined>;
  env?: Record<string, string | undefined>;
  /** Path of a JSON config file (also from `--config` / `ANODE_CONFIG`). */
  file?: string;
}

const envName = (key: string) => `ANODE_${key.toUpperCase()}`;
const flagName = (key: string) => key.replaceAll('_', '-');

function readFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

export function loadConfig(sources: ConfigSources = {}): RelayConfig {
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const file = (flags.config as string | undefined) ?? sources.file ?? env.ANODE_CONFIG;
  const raw: Record<string, unknown> = {};
  const origin: Record<string, Origin> = {};
  const set = (key: string, value: unknown, from: Origin) => {
    if (value === undefined) return;
    raw[key] = value;
    origin[key] = from;
  };

  if (file) {
    for (const [key, value] of Object.entries(readFile(file))) {
      if (!(CONFIG_KEYS as string[]).includes(key)) {
        throw new ConfigError(`unknown config key "${key}" in ${file}; ${closestKeyHint(key, (k) => k)}`);
      }
      set(key, value, 'config file');
    }
  }
  // An empty variable counts as unset (compose files and shells pass `VAR=` for "not given").
  for (const key of CONFIG_KEYS) set(key, env[envName(key)] || undefined, 'environment');
  const secretFiles: Record<string, string> = {};
  for (const key of SECRET_KEYS) {
    const path = env[`${envName(key)}_FILE`];
    if (!path) continue;
    if (env[envName(key)]) {
      throw new ConfigError(`both ${envName(key)} and ${envName(key)}_FILE are set: keep one`);
    }
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      // Not the path: one that is no file may be the secret itself, set in the wrong variable.
      const { code } = error as NodeJS.ErrnoException;
      throw new ConfigError(
        `cannot read the file ${envName(key)}_FILE names (${code ?? 'unreadable'}); ${unreadableFileHint(code, envName(key))}`,
      );
    }
    secretFiles[key] = path;
    // A file ends with a newline when written by echo or an editor: not part of the secret.
    const value = text.replace(/\r?\n$/, '');
    // An empty file named on purpose is a mistake, not "unset": auth would silently be off.
    if (value === '') throw new ConfigError(`${envName(key)}_FILE ${path} is empty`);
    set(key, value, 'secret file');
  }
  for (const [name, value] of Object.entries(flags)) {
    if (name === 'config') continue;
    const key = name.replaceAll('-', '_');
    if (!(CONFIG_KEYS as string[]).includes(key)) {
      throw new ConfigError(`unknown option --${name}; ${closestKeyHint(key, (k) => `--${flagName(k)}`)}`);
    }
    set(key, value, 'command line');
  }

  const where = (key: string) =>
    origin[key] === 'environment'
      ? ` (from ${envName(key)})`
      : origin[key] === 'secret file'
        ? ` (from ${envName(key)}_FILE ${secretFiles[key]})`
        : origin[key] === 'command line'
          ? ` (from --${flagName(key)})`
          : origin[key] === 'config file'
            ? ` (from ${file})`
            : '';
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue?.path[0] ?? '');
    const message = issue ? issueMessage(issue, key, raw[key]) : 'invalid';
    throw new ConfigError(`invalid config: ${key}: ${message}${where(key)}`);
  }
  for (const address of result.data.listen) {
    const problem = listenAddressProblem(address);
    if (problem) throw new ConfigError(`invalid config: listen: ${address}${where('listen')}: ${problem}`);
  }
  const refusal = openMeshRefusal(result.data);
  if (refusal) throw new ConfigError(refusal);
  if (result.data.mesh_persist === 'origin' && result.data.store !== 'cassandra') {
    // Nothing would hold the other relays' messages for this one: delivered live, never stored,
    // and a resume here (or a catch-up from here) skipped them with no error.
    throw new ConfigError(
      `invalid config: mesh_persist origin needs a store the relays share (store cassandra); with store ` +
        `${result.data.store} this relay would keep no copy of other relays' messages, and a resume here ` +
        'would skip them with no error: use mesh_persist all',
    );
  }
  return messageLimits(result.data);
}

/**
 * A number key given something else says so in words and shows what it got (`--port abc`: zod's
 * own words were "expected number, received NaN"). Every number key is a whole number (intIn).
 */
function issueMessage(issue: z.core.$ZodIssue, key: string, value: unknown): string {
  if (issue.code !== 'invalid_type' || (issue.expected !== 'number' && issue.expected !== 'int')) return issue.message;
  if ((SECRET_KEYS as readonly string[]).includes(key)) return 'expects a whole number';
  const text = JSON.stringify(value) ?? String(value);
  const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  return `expects a whole number, got ${shown}`;
}

/** Edits (insert, delete, replace, swap of neighbours) from `a` to `b`. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * The known key nearest a typo'd one, or where the list is: printing all ~80 keys buried the one
 * that was meant.
 */
function closestKeyHint(unknown: string, show: (key: string) => string): string {
  const wanted = unknown.toLowerCase().replaceAll('-', '_');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const key of CONFIG_KEYS) {
    const distance = editDistance(wanted, key);
    if (distance < bestDistance) [best, bestDistance] = [key, distance];
  }
  // A slip of a key, not another key: an edit per six characters (one at least), or the key with
  // its unit (_ms, _bytes) left off (`retention_max_age`). A third of the length let `mesh_port` and
  // `mesh_token` suggest `mesh_open`, which opens the mesh to any node, and `cert` suggest `port`.
  const near =
    best !== undefined &&
    (bestDistance <= Math.max(1, Math.floor(wanted.length / 6)) || /^_(ms|bytes)$/.test(best.slice(wanted.length)));
  // The command line adds that `anode --help` lists every option.
  return near ? `did you mean ${show(best!)}?` : 'docs/configuration.md lists every key';
}

export interface ConfigField {
  key: string;
  flag: string;
  env: string;
  /** The default as typed on a command line; `-` when there is none. */
  shown: string;
  description: string;
}

/** Every key with its flag, environment variable, default and meaning (`--help` and docs/configuration.md). */
export function configFields(): ConfigField[] {
  const defaults = configSchema.parse({}) as Record<string, unknown>;
  return CONFIG_KEYS.map((key) => {
    const value = defaults[key];
    const shown = value === undefined ? '-' : Array.isArray(value) ? value.join(',') || '-' : String(value);
    return {
      key,
      flag: `--${flagName(key)}`,
      env: envName(key),
      shown,
      description: configSchema.shape[key].description ?? '',
    };
  });
}

/** The help text: one aligned row per key (flag, environment variable, default, meaning). */
export function configHelp(): string {
  const rows = [{ flag: 'flag', env: 'environment', shown: 'default', description: 'meaning' }, ...configFields()];
  const width = (pick: (row: (typeof rows)[number]) => string) => Math.max(...rows.map((row) => pick(row).length));
  const [flag, env, shown] = [width((r) => r.flag), width((r) => r.env), width((r) => r.shown)];
  return rows
    .map((r) => `  ${r.flag.padEnd(flag)}  ${r.env.padEnd(env)}  ${r.shown.padEnd(shown)}  ${r.description}`)
    .join('\n');
}
