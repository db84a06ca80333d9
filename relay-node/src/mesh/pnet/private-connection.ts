import type { AbortOptions, MultiaddrConnection } from '@libp2p/interface';
import { AbstractMultiaddrConnection, type SendResult } from '@libp2p/utils';
import type { StreamCipher } from './xsalsa20.ts';

export interface PrivateConnectionInit {
  /** The raw connection, its nonce exchange done. */
  inner: MultiaddrConnection;
  /** Decrypts what the remote sends (keyed by its nonce). */
  inbound: StreamCipher;
  /** Encrypts what we send (keyed by our nonce). */
  outbound: StreamCipher;
  log: MultiaddrConnection['log'];
}

/**
 * A connection whose bytes are XORed with the two keystreams: the same wiring as @libp2p/pnet's
 * BoxMessageStream (back-pressure, close and reset pass through), with our cipher. Its state is
 * the two ciphers, held by this object only, so it goes with the connection.
 */
export class PrivateConnection extends AbstractMultiaddrConnection {
  private readonly inner: MultiaddrConnection;
  private readonly outbound: StreamCipher;

  constructor(init: PrivateConnectionInit) {
    super({ log: init.log, remoteAddr: init.inner.remoteAddr, direction: init.inner.direction });
    this.inner = init.inner;
    this.outbound = init.outbound;
    const inbound = init.inbound;
    this.inner.addEventListener('message', (event) => {
      const data = event.data;
      if (data instanceof Uint8Array) this.onData(inbound.update(data));
      else for (const chunk of data) this.onData(inbound.update(chunk));
    });
    this.inner.addEventListener('drain', () => this.onMuxerDrain());
    this.inner.addEventListener('close', (event) => {
      if (event.error == null) this.onTransportClosed();
      else if (event.local) this.abort(event.error);
      else this.onRemoteReset();
    });
  }

  async sendClose(options?: AbortOptions): Promise<void> {
    await this.inner.close(options);
  }

  sendData(data: Parameters<AbstractMultiaddrConnection['sendData']>[0]): SendResult {
    // One chunk at a time: no copy of the whole list into one buffer first.
    let canSendMore = true;
    for (const chunk of data) canSendMore = this.inner.send(this.outbound.update(chunk));
    return { sentBytes: data.byteLength, canSendMore };
  }

  sendReset(error: Error): void {
    this.inner.abort(error);
  }

  sendPause(): void {
    this.inner.pause();
  }

  sendResume(): void {
    this.inner.resume();
  }
}
