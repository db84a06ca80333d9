// A first aNode app: subscribe to a topic, publish to it, print what arrives, and exit.
//   node examples/first-app.mjs [relay or edge URL]    (default http://127.0.0.1:8080, what `npm start` runs)
// Node 22 and later have WebSocket built in; on Node 20 run `node --experimental-websocket …`.
// With auth on, put a token in ANODE_TOKEN (`npx anode token --secret … --pub 'demo.>' --sub 'demo.>'`).
import { createClient } from '@anode/client';

const client = createClient({ url: process.argv[2] ?? 'http://127.0.0.1:8080', token: process.env.ANODE_TOKEN });
try {
  const received = new Set();
  let mine;
  let done;
  const ours = new Promise((resolve) => (done = resolve));
  const sub = client.subscribe('demo.hello', (message) => {
    console.log('received', message.topic, JSON.stringify(message.data), 'from', message.source);
    received.add(message.id);
    if (message.id === mine) done();
  });
  await client.ready; // rejects, saying why, if the node cannot be reached
  await sub.ready; // live at the node (rejects if the node refuses it)
  const ack = await client.publish('demo.hello', { text: 'hello, aNode' }); // resolves once stored
  console.log('published', ack.id, 'at cursor', ack.cursor);
  mine = ack.id;
  if (received.has(mine)) done(); // it can arrive before its ack
  await ours; // others' messages may come first (an edge starts its feed a moment back)
} finally {
  await client.close(); // nothing is left open: the script ends here
}
