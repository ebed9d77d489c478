// Jest runs the TypeScript sources as native ES modules (Nest 12 ships ESM only).
/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.spec.ts'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }] },
  testTimeout: 30000,
  // Builds dist/ (unless `npm test` just did): some suites run it in child processes.
  globalSetup: '<rootDir>/test/support/global-setup.ts',
};
