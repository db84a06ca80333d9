// Types for the test runner only. `types: []` in tsconfig keeps Node's globals (Buffer, process,
// node:fs…) out of shared/, which must run everywhere; `/// <reference types="node" />` in a test
// would load all of them into the whole program. These files only declare the modules the tests
// import, and a path reference is the one way to name a file of ambient module declarations.
/* eslint-disable @typescript-eslint/triple-slash-reference */
/// <reference path="../../node_modules/@types/node/assert.d.ts" />
/// <reference path="../../node_modules/@types/node/assert/strict.d.ts" />
/// <reference path="../../node_modules/@types/node/test.d.ts" />
