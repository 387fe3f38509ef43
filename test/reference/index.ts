// The independent float64 reference of SPEC sections 2-6, written from the SPEC text.
export * from './regions';
export * from './greedy';
export * from './plan';
export * as ops from './ops';
