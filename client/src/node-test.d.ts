// Types for the test runner only (as in shared/src): `types: []` keeps Node's globals out of the
// client, which must run in browsers; these declare just the modules the tests import.
/* eslint-disable @typescript-eslint/triple-slash-reference */
/// <reference path="../../node_modules/@types/node/assert.d.ts" />
/// <reference path="../../node_modules/@types/node/assert/strict.d.ts" />
/// <reference path="../../node_modules/@types/node/test.d.ts" />
