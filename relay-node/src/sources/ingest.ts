import { assertDataDepth, assertDataSize, assertTs, isTopic, matches, toAnodeError } from '@anode/shared';
import type { Hub } from '../hub/hub.ts';
import type { Logger } from '../logger.ts';
import { extractItems } from './extract.ts';
import { jsonPreview } from './json-text.ts';
import { reasonOf, runSteps, type StepOutcome } from './pipeline.ts';
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

/** A middleware step named in the config but not loaded: the payload fails, no item is dead-lettered. */
export class UnknownStepError extends Error {
  override name = 'UnknownStepError';
}

/**
 * Messages per publish: the hub's writer refuses a publish larger than what may wait for storage
 * (`unavailable`, 50,000), so a payload with more items for one topic would fail on every poll;
 * the writer's batch size, so each publish is about one commit.
 */
const PUBLISH_CHUNK = 500;

/** Characters of a bad item's JSON kept in its dead letter when the item itself cannot be. */
export const DEAD_LETTER_PREVIEW_CHARS = 1024;

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}…` : text);

/**
 * Ingests one payload of a source: extract and map items, skip ids already ingested, run the
 * source's and then the topic's middleware, publish per topic (the id is the idempotency key,
 * so the store drops a republish across restarts and nodes too), and send failures to the
 * dead-letter topic. Items are remembered only once durable, so a failed publish is retried.
 * Whatever one item holds, it fails alone: only the store (or a step missing from the config)
 * fails the payload.
 */
export function createIngest(options: IngestOptions) {
  const { hub, steps, maxMessageBytes: max } = options;
  const topicSteps = (topic: string) =>
    options.topicPipelines.filter((p) => matches(p.topic, topic)).flatMap((p) => p.steps);
  const resolveSteps = (names: readonly string[]) =>
    names.map((name) => {
      const step = steps.get(name);
      if (!step) throw new UnknownStepError(`unknown middleware step "${name}"`);
      return step;
    });

  /**
   * The dead letter of an item: the item whole when the record still passes the message
   * contract, else a preview of its JSON (`data_omitted`), so the record cannot fail as the item
   * did. Stamped now (its own ts may be what was refused).
   */
  const deadLetter = async (runtime: SourceRuntime, message: SourceMessage, step: string, reason: string) => {
    const shown = clip(reason, 1024);
    const count = () => {
      options.onDeadLetter(runtime, shown);
      runtime.recordDeadLetter();
    };
    const fields = {
      reason: shown,
      step: clip(step, 128),
      source: message.source,
      topic: clip(String(message.topic), 600),
      id: clip(String(message.id), 256),
      ts: message.ts,
    };
    const record = [
      { ...fields, data: message.data },
      { ...fields, data_omitted: true, preview: jsonPreview(message.data, DEAD_LETTER_PREVIEW_CHARS) },
      { ...fields, data_omitted: true },
    ].find((data) => checkData(data, max) === undefined);
    if (!record) {
      count();
      options.log.warn({ source: message.source, reason: shown }, 'dead letter larger than max_message_bytes: dropped');
      return;
    }
    const stored = await hub.publishNew(
      options.deadLetterTopic,
      [{ data: record, source: message.source, key: `${message.topic}\n${message.id}` }],
      { via: 'source', source: message.source },
    );
    // Its id comes from the item's: a payload retried after a failed write, or polled again once
    // the item is past dedup_window, sends it again, and the store drops it; counted once.
    if (stored > 0) count();
  };

  /** An item through the source's and the topic's steps and the message contract. */
  const process = async (message: SourceMessage, sourceSteps: readonly Step[]): Promise<StepOutcome> => {
    const run = { defaultTimeoutMs: options.stepTimeoutMs, log: options.log };
    let result: StepOutcome =
      sourceSteps.length > 0 ? await runSteps(sourceSteps, message, run) : { outcome: 'ok', message };
    if (result.outcome === 'ok') {
      const more = resolveSteps(topicSteps(result.message.topic));
      if (more.length > 0) result = await runSteps(more, result.message, run);
    }
    if (result.outcome === 'ok') {
      const checked = check(result.message, max);
      if (checked) result = { outcome: 'dead', step: '(publish)', reason: checked };
    }
    return result;
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
      const message: SourceMessage = { id: item.id, topic: item.topic, ts: item.ts, data: item.data, source: def.name };
      let result: StepOutcome;
      if (item.error !== undefined) result = { outcome: 'dead', step: '(extract)', reason: item.error };
      else {
        try {
          result = await process(message, sourceSteps);
        } catch (error) {
          if (error instanceof UnknownStepError) throw error;
          result = { outcome: 'dead', step: '(ingest)', reason: reasonOf(error) };
        }
      }
      if (result.outcome === 'dead') await deadLetter(runtime, message, result.step, result.reason);
      if (result.outcome !== 'ok') continue;
      const out = result.message;
      let list = byTopic.get(out.topic);
      if (!list) byTopic.set(out.topic, (list = []));
      list.push(out);
      if (newest === undefined || out.ts > newest) newest = out.ts;
    }
    // Chunks in order, one after another; after a failed one the payload is retried whole, and
    // the store drops the messages already stored (content ids). Only messages new to the store
    // count as items: one this source forgot (past dedup_window) is published again, not stored.
    let stored = 0;
    try {
      for (const [topic, messages] of byTopic) {
        for (let i = 0; i < messages.length; i += PUBLISH_CHUNK) {
          const chunk = messages.slice(i, i + PUBLISH_CHUNK);
          const items = chunk.map((m) => ({ data: m.data, source: def.name, ts: m.ts, key: m.id }));
          stored += await hub.publishNew(topic, items, { via: 'source', source: def.name });
        }
      }
    } catch (error) {
      runtime.recordItems(stored, undefined);
      throw error;
    }
    for (const item of fresh) runtime.seen.add(item.id);
    runtime.recordItems(stored, newest);
  };
}

/**
 * Why a message breaks the message contract (PROTOCOL.md "Limits": topic, nesting, size, a ts no
 * more than 60 s ahead), as `<code>: <message>`, or undefined. It goes to the dead-letter topic
 * rather than failing the whole payload at publish.
 */
function check(message: SourceMessage, maxMessageBytes: number): string | undefined {
  if (!isTopic(message.topic)) return `bad_topic: ${JSON.stringify(clip(message.topic, 200))} is not a valid topic`;
  return breach(() => assertTs(message.ts, {})) ?? checkData(message.data, maxMessageBytes);
}

/** The data part of check: present, nested at most MAX_DATA_DEPTH, at most max_message_bytes. */
function checkData(data: unknown, maxMessageBytes: number): string | undefined {
  if (data === undefined) return 'bad_frame: data: required (use null for no data)';
  return breach(() => {
    assertDataDepth(data); // first: the size check serializes, which deeper data would overflow
    assertDataSize(data, { maxMessageBytes });
  });
}

const breach = (assert: () => void): string | undefined => {
  try {
    assert();
    return undefined;
  } catch (error) {
    const anode = toAnodeError(error);
    return `${anode.code}: ${anode.message}`;
  }
};
