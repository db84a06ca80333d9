/** A WebSocket endpoint of the protocol, given in full: kept as it is. */
const ENDPOINT = /\/v1\/(ws|topics\/[^/]+\/ws)$/;

/**
 * The WebSocket URL of a node from what a user has at hand: a relay's or an edge's base URL
 * (`http://localhost:8080`, `https://edge.example.com`), a `ws(s)://` one, or a full endpoint URL
 * (`…/v1/ws`, or a one-topic `…/v1/topics/<topic>/ws`, kept as given). Relays and edges both
 * serve `/v1/ws` (shared/PROTOCOL.md); a path before it is kept, for a node behind a proxy
 * prefix. Refuses, at once, anything that is not such a URL.
 */
export function endpointUrl(given: string): URL {
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw new TypeError(`not a URL: "${given}" (give a relay or edge base URL, e.g. http://localhost:8080)`);
  }
  // ws+unix: is the `ws` package's Unix-socket form (ws+unix:///path.sock:/v1/ws), for Node.
  const scheme = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:', 'ws+unix:': 'ws+unix:' }[
    url.protocol
  ];
  if (!scheme) throw new TypeError(`not an http(s) or ws(s) URL: "${given}"`);
  url.protocol = scheme;
  if (!ENDPOINT.test(url.pathname)) url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/ws`;
  url.hash = '';
  return url;
}

/** The URL as it may be shown in an error or a log: no token, no user info. */
export function shownUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}
