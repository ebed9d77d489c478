// `aurelia-mesh/testing`: what a test of an Aurelia service needs — certificates made in memory,
// Unix socket addresses, and contexts for unit-testing guards and handlers.
export {
  createTestPki,
  createTestSocketDir,
  type TestPki,
  type TestPkiKeyType,
  type TestPkiNode,
  type TestPkiOptions,
  type TestSocketDir,
} from './pki.js';
export {
  createAureliaContext,
  createRpcExecutionContext,
  type TestContextInit,
} from './context.js';
