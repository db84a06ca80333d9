import {
  checkEnvelope,
  contentId,
  createHybridClock,
  cursorFloor,
  type Envelope,
  type PublishItem,
  messageId,
  randomId,
  sourceFor,
} from '@anode/shared';
import { type EdgeConfig, type Env, edgeConfig, linksOffReason } from '../config.ts';
import { createRelayLink, RESTART_MARGIN_MS } from '../link/relay-link.ts';
import { createClients } from './clients.ts';
import { seedClock } from './clock-seed.ts';
import type { Ack, Publisher } from './hub-api.ts';
import { createHeardLog } from './heard.ts';
import { createHubStore, msgFrame } from './hub-store.ts';

/**
 * Everything one TopicHub instance holds, built on first use after each wake (hibernation drops
 * the instance; storage, sockets, attachments and the alarm survive). Accepting a publish means:
 * id (content-addressed with a key, as on a relay), cursor from this object's hybrid clock, ring
 * and outbox in one transaction, fan-out, ack, then forwarding to the relay when linked.
 */

export function createHubCore(ctx: DurableObjectState, env: Env, topic: string) {
  const config: EdgeConfig = edgeConfig(env);
  const store = createHubStore(ctx.storage, {
    ringSize: config.RING_SIZE,
    keyedMemory: config.KEYED_MEMORY,
    lateMemory: config.LATE_MEMORY,
  });
  if (store.meta.get('topic') !== topic) store.meta.set('topic', topic);
  // A cursor node id unique to this object: `e` + the start of its id (hex).
  const clock = createHybridClock(`e${ctx.id.toString().slice(0, 15)}`);
  // Past the newest cursor a resume handed out too (kept in meta, hub-store's `handed`): the clock
  // moved past it when it was sent, and a wake that forgot it stamped the next publishes below it,
  // each one late (subscriptions.ts sendAll).
  seedClock(clock, store.meta.get('clock'), store.newest(), store.meta.get('handed'));
  const clients = createClients(ctx);
  // Linked to the mesh when relays, the link secret and EDGE_URL are configured; otherwise the edge
  // stands alone.
  const linked = linksOffReason(config) === undefined;
  // Alone, this object holds the whole topic; linked, its ring starts when it does.
  if (linked && store.meta.get('floor') === undefined) store.raiseFloor(cursorFloor(Date.now() - RESTART_MARGIN_MS));
  // Which instance this is: a new one after every wake from hibernation (status shows it).
  const instance = { id: randomId().slice(1, 9), since: new Date().toISOString() };

  let alarmAt: number | null | undefined;
  /** Set the alarm to the next time anything is due (token expiry, link work). */
  const reschedule = (): Promise<void> => {
    const now = Date.now();
    const times = [link.due(now), clients.expire(now)].filter((t): t is number => t !== undefined);
    const next = times.length > 0 ? Math.max(now + 10, Math.min(...times)) : null;
    if (next === alarmAt) return Promise.resolve();
    alarmAt = next;
    const done = next === null ? ctx.storage.deleteAlarm() : ctx.storage.setAlarm(next);
    return done.catch((error: unknown) => console.error('edge: setting the alarm failed', error));
  };

  // Every message fanned out here (from the mesh or accepted here), for the resumes from the
  // relay's history running meanwhile (heard.ts).
  const heard = createHeardLog(config.MAX_SEND_BUFFER_BYTES);
  const fanOut = (envelope: Envelope, body: string) => {
    heard.add(envelope, body);
    clients.fanOut(msgFrame(body));
  };

  /**
   * A message from the mesh: into the ring (unless had; below the ring's floor, kept as a late
   * arrival: store.receive) and out to live subscribers.
   */
  const deliver = (envelope: Envelope, body: string) => {
    clock.observe(envelope.cursor);
    if (store.receive(envelope, body)) fanOut(envelope, body);
  };

  const link = createRelayLink({
    ctx,
    store,
    config,
    topic: () => topic,
    onMessage: deliver,
    onFloor: (floor) => clock.observe(floor),
    onGap: (refused) => {
      // Whatever cursor a client holds now may be past messages the relay can no longer send: a
      // resume from one is refused (cursor_expired) rather than served with a silent gap. The
      // clock first moves past the new floor (a relay's trim mark may be ahead of it).
      clock.observe(store.floor());
      store.expire(refused, clock.next());
      for (const ws of clients.all()) {
        clients.close(ws, 'slow_consumer', 'the edge lost its place in the topic; resume from your last cursor');
      }
    },
    wanted: () => linked && (clients.count() > 0 || store.outbox.size() > 0 || link.waiting()),
    reschedule,
  });

  return {
    ctx,
    topic,
    config,
    store,
    clock,
    clients,
    link,
    linked,
    reschedule,

    /** Hear every message fanned out from now on, until `stop` (heard.ts). */
    hear: (needed?: Parameters<typeof heard.listen>[0]) => heard.listen(needed),

    /**
     * Accept publishes: durable here (and queued for the relay) before the acks are sent. Every
     * item is bound to the publisher's token and checked by the message contract first: one bad
     * item refuses the lot.
     */
    accept(items: readonly PublishItem[], publisher: Publisher): Ack[] {
      const now = Date.now();
      // Linked, the relay's limit too when it is lower: what it refuses on the link was lost.
      const limits = { maxMessageBytes: linked ? link.maxMessageBytes() : config.MAX_MESSAGE_BYTES, now };
      const checked = items.map((item): Ack | Envelope => {
        const source = sourceFor(publisher, item.source);
        // Before the ack: a relay refuses a reserved name, and what the edge acked would be lost.
        if (linked) link.reserved.assertFree(source);
        const id = item.key === undefined ? messageId(now) : contentId(topic, source, item.key);
        const known = store.cursorOf(id);
        // Checked before a republish is answered, as a relay checks it: a keyed republish with
        // data too large or a ts too far ahead was acked here with the first copy's cursor.
        const envelope = checkEnvelope(
          { id, topic, cursor: known ?? clock.next(), source, ts: item.ts ?? now, data: item.data },
          limits,
        );
        return known === undefined ? envelope : { id, cursor: known }; // a republish: same id, same cursor
      });
      const acks = checked.map((envelope): Ack => {
        if (!('data' in envelope)) return envelope;
        const known = store.cursorOf(envelope.id); // the same key twice in one batch
        if (known !== undefined) return { id: envelope.id, cursor: known };
        const body = JSON.stringify(envelope);
        store.accept(envelope, body, linked);
        fanOut(envelope, body);
        return { id: envelope.id, cursor: envelope.cursor };
      });
      if (linked) {
        link.ensure();
        link.forward();
        reschedule();
      }
      return acks;
    },

    /**
     * Undefined when publishes can be checked now; otherwise resolves once they can (a linked
     * object that never heard the reserved source names waits for its link to bring them, or for
     * a relay that says it sends none). Only publishes wait for it.
     */
    ready(): Promise<void> | undefined {
      return linked ? link.untilReserved() : undefined;
    },

    /** The alarm fired: expire tokens, then whatever the link needs (dial, resend, idle close). */
    alarm(): Promise<void> {
      alarmAt = undefined;
      clients.expire();
      link.tick();
      return reschedule();
    },

    /** Note where the public can reach this Worker (the relay dials back there). */
    seen(origin: string | undefined): void {
      if (origin && store.meta.get('origin') !== origin) store.meta.set('origin', origin);
    },

    status() {
      return {
        topic,
        instance,
        clients: clients.count(),
        ...store.stats(),
        link: linked ? link.status() : null,
      };
    },
  };
}

export type HubCore = ReturnType<typeof createHubCore>;
