import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { crc32 } from 'node:zlib';

/**
 * A minimal STUN server (RFC 8489 Binding only, IPv4): it tells a node behind a NAT the public
 * address and port its UDP packets come from, which is what WebRTC's ICE needs to connect two
 * NATed relays directly. Publicly reachable relays can serve it (`mesh_stun_port`), so a private
 * mesh needs no third-party STUN server.
 */
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const MAGIC = 0x2112a442;
const XOR_MAPPED_ADDRESS = 0x0020;
const FINGERPRINT = 0x8028;
const FINGERPRINT_XOR = 0x5354554e;

/** The Binding success response to `request` from `from`, or undefined when it is not a Binding request. */
export function bindingResponse(request: Buffer, from: Pick<RemoteInfo, 'address' | 'port'>): Buffer | undefined {
  if (request.length < 20 || request.readUInt16BE(0) !== BINDING_REQUEST || request.readUInt32BE(4) !== MAGIC) {
    return undefined;
  }
  if (!isIPv4(from.address)) return undefined;
  const response = Buffer.alloc(20 + 12 + 8);
  response.writeUInt16BE(BINDING_SUCCESS, 0);
  response.writeUInt16BE(12 + 8, 2);
  response.writeUInt32BE(MAGIC, 4);
  request.copy(response, 8, 8, 20); // transaction id
  response.writeUInt16BE(XOR_MAPPED_ADDRESS, 20);
  response.writeUInt16BE(8, 22);
  response.writeUInt16BE(0x01, 24); // IPv4
  response.writeUInt16BE(from.port ^ (MAGIC >>> 16), 26);
  const address = from.address.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0);
  response.writeUInt32BE((address ^ MAGIC) >>> 0, 28);
  response.writeUInt16BE(FINGERPRINT, 32);
  response.writeUInt16BE(4, 34);
  response.writeUInt32BE((crc32(response.subarray(0, 32)) ^ FINGERPRINT_XOR) >>> 0, 36);
  return response;
}

export async function startStunServer(port: number, host = '0.0.0.0'): Promise<{ port: number; close(): void }> {
  const socket: Socket = createSocket('udp4');
  socket.on('message', (message, from) => {
    const response = bindingResponse(message, from);
    if (response) socket.send(response, from.port, from.address);
  });
  socket.on('error', () => {}); // a bad datagram must not take the relay down
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => resolve());
  });
  return { port: socket.address().port, close: () => socket.close() };
}
