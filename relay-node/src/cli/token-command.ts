import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { jwtSecret } from '../config-fields.ts';
import { unreadableFileHint } from '../unreadable-file.ts';
import { UsageError } from './usage-error.ts';

/**
 * A lifetime as `jose` reads it, positive only: a number and a unit (`90s`, `30m`, `1h`, `7d`,
 * `2 weeks`). A bare number would be read as an absolute timestamp, so it is refused.
 */
const DURATION = /^(\d+(?:\.\d+)?) ?(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?|y|yrs?|years?)$/i;

const GRANT_FLAGS: Record<string, string> = { pub: '--pub', sub: '--sub', src: '--src' };

/**
 * The secret in the file ANODE_JWT_SECRET_FILE names, as the relay reads it (without a trailing
 * newline): inside the relay's container, `anode token` then needs no secret on its command line.
 */
function secretFromFile(path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '') || undefined;
  } catch (error) {
    // Not the path: it may be the secret itself, set in the wrong variable.
    const { code } = error as NodeJS.ErrnoException;
    throw new UsageError(
      `token: cannot read the file ANODE_JWT_SECRET_FILE names (${code ?? 'unreadable'})`,
      unreadableFileHint(code, 'ANODE_JWT_SECRET'),
    );
  }
}

/**
 * `anode token`: mints an HS256 token, checked as the relay will check it (the same secret
 * rule and the same claims schema), so a token it prints is one a relay accepts.
 */
export async function tokenCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      secret: { type: 'string' },
      pub: { type: 'string', multiple: true },
      sub: { type: 'string', multiple: true },
      subject: { type: 'string' },
      src: { type: 'string', multiple: true },
      expires: { type: 'string', default: '1h' },
      audience: { type: 'string', multiple: true },
    },
    strict: true,
    allowPositionals: false,
  });
  // An empty variable counts as unset, as the relay reads it.
  const secret = values.secret ?? (process.env.ANODE_JWT_SECRET || secretFromFile(process.env.ANODE_JWT_SECRET_FILE));
  if (!secret) {
    throw new UsageError(
      'token: no secret',
      'give --secret <s>, ANODE_JWT_SECRET or ANODE_JWT_SECRET_FILE, the relay’s jwt_secret',
    );
  }
  if (!jwtSecret.safeParse(secret).success) {
    throw new UsageError(
      `token: the secret has ${secret.length} characters; a relay refuses a jwt_secret under 32`,
      'make one with: openssl rand -base64 32',
    );
  }
  const duration = DURATION.exec(values.expires);
  if (!duration || Number(duration[1]) <= 0) {
    throw new UsageError(
      `token: --expires "${values.expires}" is not a lifetime`,
      'use a number and a unit: 90s, 30m, 1h, 7d',
    );
  }
  const grants = { pub: values.pub ?? [], sub: values.sub ?? [], ...(values.src ? { src: values.src } : {}) };
  // Loaded only now: the protocol module (zod, jose) is the slow part of this command.
  const { claimsSchema, isSourceName, SOURCE_NAME_RULE, signToken } = await import('@anode/shared');
  const checked = claimsSchema.safeParse({ sub: values.subject, anode: grants });
  if (!checked.success) {
    const issue = checked.error.issues[0];
    const [, grant, index] = issue?.path ?? [];
    const flag = GRANT_FLAGS[String(grant)];
    const given = flag ? (grants as Record<string, string[] | undefined>)[String(grant)]?.[Number(index)] : undefined;
    throw new UsageError(
      flag ? `token: ${flag} "${given}": ${issue?.message}` : `token: ${issue?.message ?? 'invalid claims'}`,
      'topic patterns are dot-separated words with * for one word and > for the rest (a.b.*, a.>)',
    );
  }
  // A relay stamps a publish that names no `source` with the subject, and refuses it when the
  // subject is no source name: such a token's every plain publish would be forbidden.
  if (values.subject !== undefined && grants.pub.length > 0 && !isSourceName(values.subject)) {
    const what = `--subject "${values.subject}" is not a source name, and a relay stamps this token's publishes with it`;
    if (!values.src) {
      throw new UsageError(
        `token: ${what}: it would refuse them all`,
        `a subject is ${SOURCE_NAME_RULE}, e.g. my-app; or grant --src names to publish as`,
      );
    }
    process.stderr.write(`anode token: warning: ${what}: each publish must name a source that --src grants\n`);
  }
  if (grants.pub.length === 0 && grants.sub.length === 0) {
    process.stderr.write('anode token: warning: no --pub and no --sub: this token may neither publish nor subscribe\n');
  }
  const token = await signToken(
    secret,
    {
      ...grants,
      ...(values.subject === undefined ? {} : { subject: values.subject }),
      // For a relay with jwt_audience: one value is written as a string, several as an array.
      ...(values.audience ? { audience: values.audience.length === 1 ? values.audience[0] : values.audience } : {}),
    },
    values.expires,
  );
  process.stdout.write(`${token}\n`);
}
