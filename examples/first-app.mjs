// A first aNode app: subscribe to a topic, publish to it, print what arrives, and exit.
//   node examples/first-app.mjs [relay or edge URL]    (default http://127.0.0.1:8080, what `npm start` runs)
// Node 22 and later have WebSocket built in; on Node 20 run `node --experimental-websocket …`.
// With auth on, put a token in ANODE_TOKEN (`npx anode token --secret … --pub 'demo.>' --sub 'demo.>'`).
import { createClient } from '@anode/client';

const client = createClient({ url: process.argv[2] ?? 'http://127.0.0.1:8080', token: process.env.ANODE_TOKEN });
try {
  let onMessage;
  const arrived = new Promise((resolve) => (onMessage = resolve));
  const sub = client.subscribe('demo.hello', (message) => onMessage(message));
  await sub.ready; // rejects, saying why, if the node cannot be reached
  const ack = await client.publish('demo.hello', { text: 'hello, aNode' }); // resolves once stored
  console.log('published', ack.id, 'at cursor', ack.cursor);
  const message = await arrived;
  console.log('received', message.topic, JSON.stringify(message.data), 'from', message.source);
} finally {
  await client.close(); // nothing is left open: the script ends here
}
