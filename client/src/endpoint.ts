/**
 * The WebSocket URL of a node from what a user has at hand: a relay's or an edge's base URL
 * (`http://localhost:8080`, `https://edge.example.com`), a `ws(s)://` one, or the full `/v1/ws`
 * URL. Relays and edges both serve `/v1/ws` (shared/PROTOCOL.md); a path before it is kept, for
 * a node behind a proxy prefix. Refuses, at once, anything that is not such a URL.
 */
export function endpointUrl(given: string): URL {
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw new TypeError(`not a URL: "${given}" (give a relay or edge base URL, e.g. http://localhost:8080)`);
  }
  const scheme = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[url.protocol];
  if (!scheme) throw new TypeError(`not an http(s) or ws(s) URL: "${given}"`);
  url.protocol = scheme;
  if (!url.pathname.endsWith('/v1/ws')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/ws`;
  url.hash = '';
  return url;
}

/** The URL as it may be shown in an error or a log: no token, no user info. */
export function shownUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}
