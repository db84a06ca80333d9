import { assertDataDepth, assertDataSize, assertTs, isTopic, matches, toAnodeError } from '@anode/shared';
import type { Hub } from '../hub/hub.ts';
import type { Logger } from '../logger.ts';
import { extractItems } from './extract.ts';
import { runSteps } from './pipeline.ts';
import type { SourceMessage, Step } from './plugin-api.ts';
import type { SourceRuntime } from './source-runtime.ts';

export interface IngestOptions {
  hub: Hub;
  steps: ReadonlyMap<string, Step>;
  topicPipelines: readonly { topic: string; steps: string[] }[];
  deadLetterTopic: string;
  stepTimeoutMs: number;
  /** The message contract's size limit (config `max_message_bytes`). */
  maxMessageBytes: number;
  log: Logger;
  onDeadLetter(runtime: SourceRuntime, reason: string): void;
}

/**
 * Ingests one payload of a source: extract and map items, skip ids already ingested, run the
 * source's and then the topic's middleware, publish per topic (the id is the idempotency key,
 * so the store drops a republish across restarts and nodes too), and send failures to the
 * dead-letter topic. Items are remembered only once durable, so a failed publish is retried.
 */
export function createIngest(options: IngestOptions) {
  const { hub, steps } = options;
  const topicSteps = (topic: string) =>
    options.topicPipelines.filter((p) => matches(p.topic, topic)).flatMap((p) => p.steps);
  const resolveSteps = (names: readonly string[]) =>
    names.map((name) => {
      const step = steps.get(name);
      if (!step) throw new Error(`unknown middleware step "${name}"`);
      return step;
    });

  const deadLetter = async (runtime: SourceRuntime, message: SourceMessage, step: string, reason: string) => {
    options.onDeadLetter(runtime, reason);
    runtime.recordDeadLetter();
    const data = { reason, step, source: message.source, topic: message.topic, id: message.id, ts: message.ts };
    // Stamped now (its own ts may be what was refused); data too large to store is left out.
    const kept = reason.startsWith('too_large') ? { data_omitted: true } : { data: message.data };
    await hub.publish(
      options.deadLetterTopic,
      [{ data: { ...data, ...kept }, source: message.source, key: `${message.topic}\n${message.id}` }],
      { via: 'source', source: message.source },
    );
  };

  return async (runtime: SourceRuntime, payload: unknown): Promise<void> => {
    const def = runtime.definition;
    const batch = new Set<string>();
    const fresh = extractItems(payload, def).filter((item) => {
      if (runtime.seen.has(item.id) || batch.has(item.id)) return false;
      batch.add(item.id);
      return true;
    });
    if (fresh.length === 0) return;
    const sourceSteps = resolveSteps(def.pipeline);
    const byTopic = new Map<string, SourceMessage[]>();
    let newest: number | undefined;
    for (const item of fresh) {
      const message: SourceMessage = { ...item, source: def.name };
      const outcome =
        sourceSteps.length > 0
          ? await runSteps(sourceSteps, message, { defaultTimeoutMs: options.stepTimeoutMs, log: options.log })
          : { outcome: 'ok' as const, message };
      let result = outcome;
      if (result.outcome === 'ok') {
        const more = resolveSteps(topicSteps(result.message.topic));
        if (more.length > 0)
          result = await runSteps(more, result.message, { defaultTimeoutMs: options.stepTimeoutMs, log: options.log });
      }
      if (result.outcome === 'ok') {
        const checked = check(result.message, options.maxMessageBytes);
        if (checked) result = { outcome: 'dead', step: '(publish)', reason: checked };
      }
      if (result.outcome === 'dead') await deadLetter(runtime, message, result.step, result.reason);
      if (result.outcome !== 'ok') continue;
      const out = result.message;
      let list = byTopic.get(out.topic);
      if (!list) byTopic.set(out.topic, (list = []));
      list.push(out);
      if (newest === undefined || out.ts > newest) newest = out.ts;
    }
    let published = 0;
    for (const [topic, messages] of byTopic) {
      await hub.publish(
        topic,
        messages.map((m) => ({ data: m.data, source: def.name, ts: m.ts, key: m.id })),
        { via: 'source', source: def.name },
      );
      published += messages.length;
    }
    for (const item of fresh) runtime.seen.add(item.id);
    runtime.recordItems(published, newest);
  };
}

/**
 * Why a message breaks the message contract (PROTOCOL.md "Limits": topic, nesting, size, a ts no
 * more than 60 s ahead), as `<code>: <message>`, or undefined. It goes to the dead-letter topic
 * rather than failing the whole payload at publish.
 */
function check(message: SourceMessage, maxMessageBytes: number): string | undefined {
  if (!isTopic(message.topic)) return `bad_topic: ${JSON.stringify(message.topic)} is not a valid topic`;
  try {
    assertTs(message.ts, {});
    assertDataDepth(message.data);
    assertDataSize(message.data, { maxMessageBytes });
  } catch (error) {
    const anode = toAnodeError(error);
    return `${anode.code}: ${anode.message}`;
  }
  return undefined;
}
