// Processor options, checked once at creation: every mistake is a RangeError or TypeError now,
// not a surprise at the fortieth block of the third image.
import type { BackendName, Region } from '../types';

export type Method = 'toma' | 'tomesd' | 'todo';
export type RatioOption = number | ((block: string) => number) | { similarity: number };

export interface ProcessorOptions {
  /** Fraction of image tokens removed, a per-block function, or { similarity } (adaptive). */
  ratio: RatioOption;
  region?: Region;
  tau?: number;
  shareBatch?: boolean;
  /** Steps between destination selections (default 10). */
  destinationInterval?: number;
  /** Steps between weight recomputations with kept destinations (default 5). */
  weightInterval?: number;
  /**
   * Blocks sharing one plan per step. Default: blocks with the same grid and channel count.
   * Return the same string for blocks that share.
   */
  group?: (block: string, info: { grid: [number, number]; channels: number }) => string;
  /** Blocks that stay dense: names, or a predicate. */
  dense?: string[] | ((block: string) => boolean);
  /** Largest ratio any block may use (a guard against a per-block function or adaptive mode). */
  maxRatio?: number;
  method?: Method;
  /** ToMeSD: random destination inside each 2x2 cell from this seed (default 0); false = top-left. */
  seed?: number | false;
  /** Proportional attention over merged keys (see MergeAttentionOptions); default false. */
  proportional?: boolean;
  backend?: BackendName;
}

export interface ResolvedOptions {
  ratio: RatioOption;
  region?: Region;
  tau?: number;
  shareBatch: boolean;
  destinationInterval: number;
  weightInterval: number;
  group: (block: string, info: { grid: [number, number]; channels: number }) => string;
  isDense: (block: string) => boolean;
  maxRatio: number;
  method: Method;
  seed: number | false;
  proportional: boolean;
  backend?: BackendName;
}

const KNOWN = new Set([
  'ratio', 'region', 'tau', 'shareBatch', 'destinationInterval', 'weightInterval', 'group', 'dense',
  'maxRatio', 'method', 'seed', 'proportional', 'backend',
]);

/** ToMeSD merges at most 3 of every 4 tokens (one destination per 2x2 cell). */
export const TOMESD_MAX_RATIO = 0.75;

function intOption(o: Record<string, unknown>, key: string, def: number): number {
  const v = o[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw new RangeError(`options.${key} must be an integer >= 1, got ${String(v)}`);
  return v;
}

export function checkRatio(r: unknown, what: string, maxRatio: number): number {
  if (typeof r !== 'number' || !Number.isFinite(r) || r < 0 || r >= 1)
    throw new RangeError(`${what} must be a finite number in [0, 1), got ${String(r)} (it is never clamped)`);
  if (r > maxRatio) throw new RangeError(`${what} = ${r} exceeds options.maxRatio = ${maxRatio}`);
  return r;
}

export function resolveOptions(options: ProcessorOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new TypeError(`options must be an object, got ${String(options)}`);
  const o = options as unknown as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (!KNOWN.has(key)) throw new RangeError(`options.${key} is not a processor option (known: ${[...KNOWN].join(', ')})`);

  const method = (o.method ?? 'toma') as Method;
  if (method !== 'toma' && method !== 'tomesd' && method !== 'todo')
    throw new RangeError(`options.method must be 'toma', 'tomesd' or 'todo', got ${String(o.method)}`);

  let maxRatio = 1;
  if (o.maxRatio !== undefined) {
    if (typeof o.maxRatio !== 'number' || !(o.maxRatio > 0 && o.maxRatio < 1))
      throw new RangeError(`options.maxRatio must be a number in (0, 1), got ${String(o.maxRatio)}`);
    maxRatio = o.maxRatio;
  }
  if (method === 'tomesd') maxRatio = Math.min(maxRatio, TOMESD_MAX_RATIO);

  const ratio = o.ratio as RatioOption;
  if (typeof ratio === 'number') {
    if (method === 'tomesd' && ratio > TOMESD_MAX_RATIO)
      throw new RangeError(
        `options.ratio = ${ratio} is above ToMeSD's ceiling of ${TOMESD_MAX_RATIO} (one destination per 2x2 cell); ` +
          'tomesd caps this silently, toma does not',
      );
    checkRatio(ratio, 'options.ratio', maxRatio);
  } else if (typeof ratio === 'function') {
    // checked per block, at call time, with the block's name in the message
  } else if (ratio !== null && typeof ratio === 'object' && !Array.isArray(ratio)) {
    const s = (ratio as { similarity?: unknown }).similarity;
    if (typeof s !== 'number' || !(s > 0 && s <= 1))
      throw new RangeError(`options.ratio.similarity must be a number in (0, 1], got ${String(s)}`);
    if (method !== 'toma') throw new RangeError(`options.ratio = { similarity } needs method 'toma', got '${method}'`);
  } else {
    throw new TypeError(
      `options.ratio must be a number in [0, 1), a function (block) => ratio, or { similarity }, got ${String(ratio)}`,
    );
  }

  if (o.tau !== undefined && (typeof o.tau !== 'number' || !(o.tau > 0)))
    throw new RangeError(`options.tau must be > 0 (Infinity for the hard plan), got ${String(o.tau)}`);
  if (o.proportional !== undefined && typeof o.proportional !== 'boolean')
    throw new TypeError(`options.proportional must be a boolean, got ${String(o.proportional)}`);
  if (o.shareBatch !== undefined && typeof o.shareBatch !== 'boolean')
    throw new TypeError(`options.shareBatch must be a boolean, got ${String(o.shareBatch)}`);
  if (o.region !== undefined) checkRegion(o.region);
  if (o.backend !== undefined && o.backend !== 'cpu' && o.backend !== 'cuda')
    throw new TypeError(`options.backend must be 'cpu' or 'cuda', got ${String(o.backend)}`);
  if (o.group !== undefined && typeof o.group !== 'function')
    throw new TypeError(`options.group must be a function (block, { grid, channels }) => string, got ${String(o.group)}`);

  let isDense: (block: string) => boolean = () => false;
  if (Array.isArray(o.dense)) {
    for (const b of o.dense)
      if (typeof b !== 'string') throw new TypeError(`options.dense must list block names (strings), got ${String(b)}`);
    const set = new Set(o.dense as string[]);
    isDense = (b) => set.has(b);
  } else if (typeof o.dense === 'function') {
    isDense = o.dense as (block: string) => boolean;
  } else if (o.dense !== undefined) {
    throw new TypeError(`options.dense must be an array of block names or a predicate, got ${String(o.dense)}`);
  }

  let seed: number | false = 0;
  if (o.seed === false) seed = false;
  else if (o.seed !== undefined) {
    if (typeof o.seed !== 'number' || !Number.isInteger(o.seed) || o.seed < 0 || o.seed > 2 ** 31 - 1)
      throw new RangeError(`options.seed must be an integer in [0, 2^31) or false, got ${String(o.seed)}`);
    seed = o.seed;
  }

  return {
    ratio,
    region: o.region as Region | undefined,
    tau: o.tau as number | undefined,
    shareBatch: (o.shareBatch as boolean | undefined) ?? false,
    destinationInterval: intOption(o, 'destinationInterval', 10),
    weightInterval: intOption(o, 'weightInterval', 5),
    group: (o.group as ResolvedOptions['group']) ?? ((_b, i) => `${i.grid[0]}x${i.grid[1]}:${i.channels}`),
    isDense,
    maxRatio,
    method,
    seed,
    proportional: (o.proportional as boolean | undefined) ?? false,
    backend: o.backend as BackendName | undefined,
  };
}

function checkRegion(r: unknown): void {
  const bad = () => new RangeError(`options.region must be { kind: 'tile', th, tw }, { kind: 'stripe', rows } or { kind: 'global' }, got ${JSON.stringify(r)}`);
  if (r === null || typeof r !== 'object') throw bad();
  const g = r as Record<string, unknown>;
  const pos = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 2 ** 31 - 1; // the addon's int32 bound
  if (g.kind === 'tile' && pos(g.th) && pos(g.tw)) return;
  if (g.kind === 'stripe' && pos(g.rows)) return;
  if (g.kind === 'global') return;
  throw bad();
}
