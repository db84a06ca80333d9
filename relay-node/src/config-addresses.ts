import { isIP, isIPv4, isIPv6 } from 'node:net';

/**
 * Addresses the relay listens on, checked when the config is read: one it cannot use is refused
 * there in one line (exit code 2), not after the store opened, in libp2p's or DNS's own words.
 * A multiaddr is read here by hand: the multiaddr package costs `anode --help` a quarter second.
 */

/** Multiaddr protocols that take a value (the next segment; `unix` takes the rest). */
const WITH_VALUE = new Set([
  'ip4',
  'ip6',
  'ip6zone',
  'ipcidr',
  'dns',
  'dns4',
  'dns6',
  'dnsaddr',
  'tcp',
  'udp',
  'p2p',
  'sni',
  'certhash',
]);
const HOST = '(?:ip4|ip6zone/ip6|ip6|dns|dns4|dns6|dnsaddr)';
/**
 * Protocol sequences the mesh's transports listen on (mesh/host.ts: the listen filters of
 * @libp2p/tcp, @libp2p/websockets, @libp2p/webrtc and @libp2p/circuit-relay-v2). Any other
 * (`/udp/…`, QUIC, WebRTC-direct, WebTransport) no transport takes: libp2p stops at start.
 */
const LISTENABLE = [
  new RegExp(`^${HOST}/tcp(?:/p2p)?$`),
  new RegExp(`^${HOST}/tcp/(?:ws|wss|tls(?:/sni)?/ws)(?:/p2p)?$`),
  /^(?:.+\/)?p2p-circuit(?:\/p2p)?$/,
  /^(?:.+\/)?webrtc(?:\/p2p)?$/,
  /^unix$/,
];

export const LISTEN_FORMS =
  'TCP (/ip4/0.0.0.0/tcp/4001), WebSocket (/ip4/0.0.0.0/tcp/4002/ws), /p2p-circuit or /webrtc';

/** Why the mesh cannot listen on `address` (to follow the address), or undefined when it can. */
export function listenAddressProblem(address: string): string | undefined {
  // A trailing slash is no protocol: the multiaddr parser (and so libp2p) ignores it.
  const parts = address.replace(/\/$/, '').split('/').slice(1);
  const names: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i]!;
    names.push(name);
    if (name === 'unix') break;
    if (!WITH_VALUE.has(name)) continue;
    const value = parts[++i];
    const kind = !value
      ? 'a value'
      : name === 'ip4'
        ? 'an IPv4 address'
        : name === 'ip6'
          ? 'an IPv6 address'
          : 'a port';
    const bad =
      !value ||
      (name === 'ip4' && !isIPv4(value)) ||
      (name === 'ip6' && !isIPv6(value)) ||
      ((name === 'tcp' || name === 'udp') && !(/^\d{1,5}$/.test(value) && Number(value) <= 65_535));
    if (bad)
      return `${value ? `${value} is not ${kind}` : `/${name} needs a value`}; the mesh listens on ${LISTEN_FORMS}`;
  }
  if (LISTENABLE.some((form) => form.test(names.join('/')))) return undefined;
  return `no transport of the mesh listens on it; give ${LISTEN_FORMS}`;
}

/**
 * Whether `host` can be an address to listen on: an IP address, or a DNS name (resolved at
 * start). A name whose last label is all digits is neither (RFC 3696: `999.1.1.1` is a mistyped
 * IPv4 address, which DNS would only answer ENOTFOUND for).
 */
export function validHost(host: string): boolean {
  if (isIP(host) !== 0) return true;
  const labels = host.replace(/\.$/, '').split('.');
  return (
    labels.every((label) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label)) &&
    !/^\d+$/.test(labels.at(-1) ?? '')
  );
}
