import { createApp } from './app.ts';

/** The edge Worker: the Hono app, and the Durable Object class it routes each topic to. */
export { TopicHub } from './hub/topic-hub.ts';

export default createApp();
