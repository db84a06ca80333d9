import assert from 'node:assert/strict';
import {
  type Case,
  errFor,
  type Frame,
  fresh,
  isOp,
  publish,
  roundTrip,
  tokenFor,
  topicSocket,
  withRef,
} from './support.ts';

/** Client and server frames (PROTOCOL.md "WebSocket"), on the one-topic socket every target serves. */
export const frameCases: Case[] = [
  {
    name: 'ping is answered by pong echoing ref',
    async run(target) {
      const sock = await topicSocket(target, fresh('fr'), await tokenFor('pinger'));
      sock.send({ op: 'ping', ref: 'ping-1' });
      assert.deepEqual(await sock.next(withRef('ping-1')), { op: 'pong', ref: 'ping-1' });
      sock.send({ op: 'ping' });
      assert.deepEqual(await sock.next(isOp('pong')), { op: 'pong' });
      sock.close();
    },
  },
  {
    name: 'the one-topic socket subscribes on open; pub gets ack and msg carries the full envelope',
    async run(target) {
      const topic = fresh('fr');
      const sock = await topicSocket(target, topic, await tokenFor('sensor-7'));
      const subscribed = await sock.next<Frame<'subscribed'>>(isOp('subscribed'));
      assert.equal(subscribed.topic, topic);
      assert.equal(typeof subscribed.cursor, 'string');
      assert.deepEqual(Object.keys(subscribed).sort(), ['cursor', 'op', 'topic']);

      sock.send({ op: 'pub', topic, data: { n: 1 }, source: 'sensor-7', ts: 1234, ref: 'pub-1' });
      const ack = await sock.next<Frame<'ack'>>(withRef('pub-1'));
      assert.equal(ack.op, 'ack');
      assert.deepEqual(Object.keys(ack).sort(), ['cursor', 'id', 'op', 'ref']);
      const msg = await sock.next<Frame<'msg'>>(isOp('msg'));
      assert.deepEqual(msg, {
        op: 'msg',
        id: ack.id,
        topic,
        cursor: ack.cursor,
        source: 'sensor-7',
        ts: 1234,
        data: { n: 1 },
      });
      assert.ok(ack.cursor > subscribed.cursor, 'a live message sorts after the subscribed cursor');
      sock.close();
    },
  },
  {
    name: 'a publish without source and ts is stamped with the token subject and the time of ingest',
    async run(target) {
      const topic = fresh('fr');
      const sock = await topicSocket(target, topic, await tokenFor('stamped'));
      await sock.next(isOp('subscribed'));
      const before = Date.now();
      sock.send({ op: 'pub', topic, data: null, ref: 'p' });
      await sock.next(withRef('p'));
      const msg = await sock.next<Frame<'msg'>>(isOp('msg'));
      assert.equal(msg.source, 'stamped');
      assert.ok(msg.ts >= before && msg.ts <= Date.now(), `ts ${msg.ts} assigned on ingest`);
      assert.equal(msg.data, null);
      sock.close();
    },
  },
  {
    name: 'unsub stops delivery on the socket; sub again resumes it with subscribed',
    async run(target) {
      const topic = fresh('fr');
      const sock = await topicSocket(target, topic, await tokenFor('unsubber'));
      await sock.next(isOp('subscribed'));
      sock.send({ op: 'unsub', topic, ref: 'u' });
      await roundTrip(sock);
      sock.send({ op: 'pub', topic, data: 'unseen', ref: 'p1' });
      assert.equal((await sock.next(withRef('p1'))).op, 'ack');
      await roundTrip(sock);
      assert.equal(sock.frames.filter((f) => f.op === 'msg').length, 0, 'nothing delivered after unsub');
      sock.send({ op: 'sub', topic, ref: 's' });
      const again = await sock.next<Frame<'subscribed'>>(withRef('s'));
      assert.equal(again.op, 'subscribed');
      sock.send({ op: 'pub', topic, data: 'seen', ref: 'p2' });
      assert.equal((await sock.next<Frame<'msg'>>(isOp('msg'))).data, 'seen');
      sock.close();
    },
  },
  {
    name: 'err frames carry exactly op, code, message and the ref of the frame they answer',
    async run(target) {
      const topic = fresh('fr');
      const sock = await topicSocket(target, topic, await tokenFor('referee'));
      const err = await errFor(sock, { op: 'pub', topic }, 'no-data');
      assert.deepEqual(Object.keys(err).sort(), ['code', 'message', 'op', 'ref']);
      assert.equal(err.code, 'bad_frame');
      sock.close();
    },
  },
  {
    name: 'a resume sends exactly what was missed, then subscribed at the newest cursor, then live messages',
    async run(target) {
      const topic = fresh('fr');
      const token = await tokenFor('resumer');
      const acks = await publish(target, topic, token, [0, 1, 2, 3, 4, 5, 6, 7]);
      const sock = await topicSocket(target, topic, token, acks[1]?.cursor);
      const subscribed = await sock.next<Frame<'subscribed'>>(isOp('subscribed'), 10_000);
      const missed = sock.frames.filter(isOp('msg'));
      assert.deepEqual(
        missed.map((m) => m.data),
        [2, 3, 4, 5, 6, 7],
      );
      assert.equal(subscribed.cursor, acks[7]?.cursor);
      await publish(target, topic, token, ['live']);
      assert.equal((await sock.next<Frame<'msg'>>((f) => f.op === 'msg' && f.data === 'live')).data, 'live');
      sock.close();
    },
  },
  {
    name: 'a sub frame with after on the socket resumes that topic with no gap',
    async run(target) {
      const topic = fresh('fr');
      const token = await tokenFor('resubber');
      const sock = await topicSocket(target, topic, token);
      await sock.next(isOp('subscribed'));
      const acks = await publish(target, topic, token, ['a', 'b', 'c']);
      await sock.next((f) => f.op === 'msg' && f.data === 'c');
      sock.send({ op: 'sub', topic, after: acks[0]?.cursor, ref: 'again' });
      const subscribed = await sock.next<Frame<'subscribed'>>(withRef('again'), 10_000);
      assert.equal(subscribed.cursor, acks[2]?.cursor);
      const replayed = sock.frames.filter(isOp('msg')).slice(3);
      assert.deepEqual(
        replayed.map((m) => m.data),
        ['b', 'c'],
      );
      sock.close();
    },
  },
];
