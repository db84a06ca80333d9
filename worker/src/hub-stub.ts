import { InternalError } from '@anode/shared';
import type { Env } from './config.ts';

/** The one place a TopicHub stub is looked up: one Durable Object per topic name. */
export function hubFor(env: Env, topic: string) {
  if (!env.TOPIC_HUB) {
    throw new InternalError('the TOPIC_HUB Durable Object binding is missing: see wrangler.toml');
  }
  return env.TOPIC_HUB.get(env.TOPIC_HUB.idFromName(topic));
}
