import assert from 'node:assert/strict';
import type { Envelope } from '@anode/shared';
import { createClient } from '@anode/client';
import { LIMITS } from './targets.ts';
import {
  bearer,
  type Case,
  connect,
  errFor,
  eventually,
  type Frame,
  fresh,
  isOp,
  publish,
  roundTrip,
  tokenFor,
  topicSocket,
  within,
  withRef,
} from './support.ts';

/** `/v1/ws`: many topics and patterns over one socket, and the client library on top of it. */
export const socketCases: Case[] = [
  {
    name: '/v1/ws carries many topics over one socket: sub, pub, msg and unsub per topic',
    async run(target) {
      const token = await tokenFor('muxer');
      const [a, b] = [fresh('mx'), fresh('mx')];
      const sock = await connect(`${target.wsUrl}/v1/ws`, bearer(token));
      for (const topic of [a, b]) {
        sock.send({ op: 'sub', topic, ref: topic });
        const subscribed = await sock.next<Frame<'subscribed'>>(withRef(topic));
        assert.deepEqual([subscribed.op, subscribed.topic], ['subscribed', topic]);
      }
      sock.send({ op: 'pub', topic: a, data: 'to a', ref: 'pa' });
      sock.send({ op: 'pub', topic: b, data: 'to b', ref: 'pb' });
      await sock.next(withRef('pa'));
      await sock.next(withRef('pb'));
      await eventually(async () => sock.frames.filter(isOp('msg')).length === 2, 'both messages');
      sock.send({ op: 'unsub', topic: a, ref: 'ua' });
      await roundTrip(sock);
      await publish(target, a, token, ['unseen']);
      await publish(target, b, token, ['seen']);
      await sock.next((f) => f.op === 'msg' && f.data === 'seen');
      assert.deepEqual(
        sock.frames
          .filter(isOp('msg'))
          .map((m) => `${m.topic === a ? 'a' : 'b'}:${String(m.data)}`)
          .sort(),
        ['a:to a', 'b:seen', 'b:to b'],
      );
      sock.close();
    },
  },
  {
    name: 'a pattern subscription receives every matching topic, and resumes from a cursor',
    async run(target) {
      const token = await tokenFor('patterned');
      const root = fresh('pt');
      const sock = await connect(`${target.wsUrl}/v1/ws`, bearer(token));
      sock.send({ op: 'sub', topic: `${root}.*`, ref: 'p' });
      const subscribed = await sock.next<Frame<'subscribed'>>(withRef('p'));
      assert.equal(subscribed.topic, `${root}.*`);
      const acks = [
        ...(await publish(target, `${root}.x`, token, ['x1'])),
        ...(await publish(target, `${root}.y`, token, ['y1'])),
        ...(await publish(target, `${root}.y.deeper`, token, ['not matched'])),
      ];
      await eventually(async () => sock.frames.filter(isOp('msg')).length >= 2, 'pattern messages');
      await roundTrip(sock);
      assert.deepEqual(
        sock.frames
          .filter(isOp('msg'))
          .map((m) => m.data)
          .sort(),
        ['x1', 'y1'],
      );
      const resumed = await connect(`${target.wsUrl}/v1/ws`, bearer(token));
      resumed.send({ op: 'sub', topic: `${root}.>`, after: acks[0]?.cursor, ref: 'r' });
      assert.equal((await resumed.next(withRef('r'), 10_000)).op, 'subscribed');
      await eventually(async () => resumed.frames.filter(isOp('msg')).length >= 2, 'the resumed messages');
      assert.deepEqual(
        resumed.frames.filter(isOp('msg')).map((m) => m.data),
        ['y1', 'not matched'],
      );
      sock.close();
      resumed.close();
    },
  },
  {
    name: 'a socket opened on one topic can sub and unsub any other topic',
    async run(target) {
      const token = await tokenFor('wanderer');
      const [home, away] = [fresh('wd'), fresh('wd')];
      const sock = await topicSocket(target, home, token);
      await sock.next(isOp('subscribed'));
      sock.send({ op: 'sub', topic: away, ref: 'away' });
      const reply = await sock.next(withRef('away'));
      assert.equal(reply.op, 'subscribed', JSON.stringify(reply));
      sock.send({ op: 'pub', topic: away, data: 'over there', ref: 'p' });
      assert.equal((await sock.next(withRef('p'))).op, 'ack');
      assert.equal((await sock.next<Frame<'msg'>>(isOp('msg'))).topic, away);
      sock.close();
    },
  },
  {
    name: 'limit_reached: more subscriptions than allowed per connection',
    async run(target) {
      const token = await tokenFor('collector');
      const sock = await connect(`${target.wsUrl}/v1/ws`, bearer(token));
      const topics = Array.from({ length: LIMITS.maxSubscriptions + 1 }, () => fresh('lr'));
      for (const topic of topics.slice(0, -1)) {
        sock.send({ op: 'sub', topic, ref: topic });
        assert.equal((await sock.next(withRef(topic))).op, 'subscribed');
      }
      const err = await errFor(sock, { op: 'sub', topic: topics.at(-1) }, 'one-too-many');
      assert.equal(err.code, 'limit_reached');
      sock.send({ op: 'sub', topic: topics[0], ref: 'again' });
      assert.equal((await sock.next(withRef('again'))).op, 'subscribed', 'resubscribing is not a new subscription');
      sock.close();
    },
  },
  {
    name: 'the client library works against the target: subscribe, publish, receive once',
    async run(target) {
      const token = await tokenFor('library');
      const topic = fresh('cl');
      const client = createClient({ url: target.wsUrl, token, reconnect: false });
      try {
        const received: Envelope[] = [];
        const sub = client.subscribe(topic, (m) => received.push(m));
        await within(sub.ready, 10_000, 'subscribed');
        const ack = await within(client.publish(topic, { n: 1 }), 10_000, 'the ack');
        await eventually(async () => received.length === 1, 'the message');
        assert.equal(received[0]?.id, ack.id);
        assert.equal(received[0]?.source, 'library');
      } finally {
        client.close();
      }
    },
  },
];
