/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: '<rootDir>/test/env/shared-realm.js',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', diagnostics: { warnOnly: false } }] },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  moduleFileExtensions: ['ts', 'js', 'json', 'node'],
  // Native work is CPU-bound on small machines: one worker per core at most.
  maxWorkers: '50%',
  testTimeout: 120000,
};
