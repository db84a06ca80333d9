/**
 * Secrets kept out of `/v1/status` and the logs. Source URLs may carry credentials (user:pass@,
 * `?token=`, `?api_key=`), and an upstream's answer may hold anything: both are shown redacted,
 * whoever asks. The redacted form keeps enough to recognise the URL.
 */
// Userinfo may hold a quote (a URL keeps `'` unencoded): stopping there showed the rest of a password.
const URL_IN_TEXT = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#<>`]*@)?([^\s?#"'<>`]*)(\?[^\s#"'<>`]*)?/gi;
const SECRET_PARAM = /token|key|secret|pass|auth|sig|credential|session|cookie/i;
export const REDACTED = '***';

function redactQuery(query: string): string {
  return query.replace(/([?&])([^=&]*)=([^&]*)/g, (whole, sep: string, name: string) =>
    SECRET_PARAM.test(decodeSafe(name)) ? `${sep}${name}=${REDACTED}` : whole,
  );
}

function decodeSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Every URL in `text` with its userinfo and its secret-looking query values replaced. */
export function redactUrls(text: string): string {
  if (!text.includes('://')) return text;
  return text.replace(
    URL_IN_TEXT,
    (_whole, scheme: string, userinfo: string | undefined, rest: string, query: string | undefined) =>
      `${scheme}${userinfo ? `${REDACTED}@` : ''}${rest}${query ? redactQuery(query) : ''}`,
  );
}

/** Header names whose values are credentials. */
export const SECRET_HEADER = /authorization|cookie|token|key|secret|pass|auth/i;

/** Headers with credential values replaced (for any view of a source definition). */
export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).map(([name, value]) => [name, SECRET_HEADER.test(name) ? REDACTED : value]),
  );
}

/**
 * A status object made safe to show: URLs redacted in every string, and the fields named in
 * `adminOnly` (such as the first bytes of an upstream answer) removed unless the reader is the
 * admin.
 */
export function redactStatus(value: unknown, options: { admin: boolean; adminOnly: ReadonlySet<string> }): unknown {
  if (typeof value === 'string') return redactUrls(value);
  if (Array.isArray(value)) return value.map((item) => redactStatus(item, options));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    if (!options.admin && options.adminOnly.has(key)) continue;
    out[key] = redactStatus(inner, options);
  }
  return out;
}
