import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import cassandra from 'cassandra-driver';
import { asRejection } from './cassandra-store.ts';

const { responseErrorCodes: codes } = cassandra.types;
const answer = (code: number, message: string) => new cassandra.errors.ResponseError(code, message);

/**
 * Which Cassandra answers refuse a message for good (StoreRejectedError: the publish is refused,
 * a spooled copy is moved aside) and which are outages (spooled, tried again). Only the size of
 * the message itself is a refusal: one that meets every write alike taken as a refusal moved every
 * spooled message out of history.
 */
describe('Cassandra refusals for good', () => {
  it('takes an oversized mutation as a refusal of that message, too_large', () => {
    const rejection = asRejection(
      answer(codes.invalid, 'Rejected an oversized mutation (17825887/16777216) for keyspace: ks. Top keys are: ...'),
    );
    assert.equal(rejection?.code, 'too_large');
  });

  it('takes a request past native_transport_max_frame_size as a refusal of that message, too_large', () => {
    const rejection = asRejection(
      answer(codes.invalid, 'Request is too big: length 16777406 exceeds maximum allowed length 16777216.'),
    );
    assert.equal(rejection?.code, 'too_large');
  });

  it('takes every other refusal as an outage', () => {
    const outages = [
      answer(codes.invalid, 'Undefined column name minted in table ks.messages'),
      answer(codes.invalid, 'Unsupported consistency level: EACH_QUORUM'),
      answer(codes.invalid, 'Keyspace ks does not exist'),
      answer(codes.invalid, 'unconfigured table messages'),
      answer(codes.syntaxError, "line 1:0 no viable alternative at input 'INSRT'"),
      answer(codes.configError, 'Cannot add a column of type blob'),
      answer(codes.alreadyExists, 'Table ks.messages already exists'),
      answer(codes.functionFailure, 'execution of ks.f failed'),
      answer(codes.unauthorized, 'User anode has no MODIFY permission'),
      new Error('oversized mutation, but not an answer of Cassandra'),
    ];
    for (const error of outages) assert.equal(asRejection(error), undefined, error.message);
  });
});
