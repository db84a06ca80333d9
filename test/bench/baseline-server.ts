// The baseline: a bare `ws` broadcast server, the floor any Node WebSocket server must pay.
// Every text frame received is sent to every other open socket. Prints its URL when ready.
import { WebSocket, WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
wss.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== socket && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
wss.on('listening', () => {
  const address = wss.address() as { port: number };
  process.stdout.write(`baseline ready at ws://127.0.0.1:${address.port}\n`);
});
// Exit at once: an overloaded baseline may have seconds of sends queued, and nothing needs flushing.
process.on('SIGTERM', () => process.exit(0));
