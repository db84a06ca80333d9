import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { bindingResponse, startStunServer } from './stun-server.ts';

const MAGIC = 0x2112a442;
const bindingRequest = () => {
  const request = Buffer.alloc(20);
  request.writeUInt16BE(0x0001, 0);
  request.writeUInt32BE(MAGIC, 4);
  randomBytes(12).copy(request, 8);
  return request;
};

describe('STUN server', () => {
  it('answers a Binding request with the XOR-mapped address and a valid fingerprint', () => {
    const request = bindingRequest();
    const response = bindingResponse(request, { address: '203.0.113.7', port: 40000 }) as Buffer;
    assert.equal(response.readUInt16BE(0), 0x0101);
    assert.equal(response.readUInt16BE(2), response.length - 20);
    assert.deepEqual(response.subarray(8, 20), request.subarray(8, 20));
    assert.equal(response.readUInt16BE(26) ^ (MAGIC >>> 16), 40000);
    assert.equal((response.readUInt32BE(28) ^ MAGIC) >>> 0, 203 * 2 ** 24 + 113 * 2 ** 8 + 7);
    assert.equal(response.readUInt32BE(36), (crc32(response.subarray(0, 32)) ^ 0x5354554e) >>> 0);
  });

  it('ignores anything else', () => {
    assert.equal(bindingResponse(Buffer.from('hello'), { address: '127.0.0.1', port: 1 }), undefined);
    const notBinding = bindingRequest();
    notBinding.writeUInt16BE(0x0111, 0);
    assert.equal(bindingResponse(notBinding, { address: '127.0.0.1', port: 1 }), undefined);
  });

  it('serves over UDP on loopback', async () => {
    const server = await startStunServer(0, '127.0.0.1');
    const client = createSocket('udp4');
    try {
      await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
      const answer = new Promise<Buffer>((resolve) => client.once('message', resolve));
      client.send(bindingRequest(), server.port, '127.0.0.1');
      const response = await answer;
      assert.equal(response.readUInt16BE(26) ^ (MAGIC >>> 16), client.address().port);
    } finally {
      client.close();
      server.close();
    }
  });
});
