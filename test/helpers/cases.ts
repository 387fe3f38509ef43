// The plan cases shared by the op tests: odd grids, every region kind (remainder tiles included),
// ratios 0 / 0.25 / 0.5 / 0.75 / 0.9, tau 1000 / 10 / Infinity, prefix 0 / 7, batch 1 / 2,
// shareBatch on and off, and all three dtypes. Each case's data comes from its own seed.
import type * as toma from '../../lib';
import type { Dtype } from './data';

export interface PlanCase {
  name: string;
  B: number;
  P: number;
  H: number;
  W: number;
  C: number;
  region?: toma.Region;
  ratio: number;
  tau?: number;
  shareBatch?: boolean;
  dtype: Dtype;
  /** Mean of the Gaussian data (a positive mean makes the similarities mostly non-negative). */
  mean?: number;
}

const tile = (th: number, tw: number): toma.Region => ({ kind: 'tile', th, tw });
const stripe = (rows: number): toma.Region => ({ kind: 'stripe', rows });
const global: toma.Region = { kind: 'global' };

function regionName(r?: toma.Region): string {
  if (!r) return 'tile4x4(default)';
  if (r.kind === 'tile') return `tile${r.th}x${r.tw}`;
  if (r.kind === 'stripe') return `stripe${r.rows}`;
  return 'global';
}

function mk(c: Omit<PlanCase, 'name'>): PlanCase {
  const name =
    `${c.dtype} B${c.B} P${c.P} ${c.H}x${c.W} C${c.C} ${regionName(c.region)} ratio${c.ratio}` +
    ` tau${c.tau ?? 'default'}${c.shareBatch ? ' shareBatch' : ''}${c.mean ? ` mean${c.mean}` : ''}`;
  return { name, ...c };
}

export const PLAN_CASES: PlanCase[] = [
  mk({ B: 1, P: 0, H: 5, W: 7, C: 16, region: tile(3, 2), ratio: 0.5, tau: 1000, dtype: 'float32' }),
  mk({ B: 2, P: 7, H: 5, W: 7, C: 8, ratio: 0.75, tau: 10, dtype: 'float32' }),
  mk({ B: 2, P: 0, H: 9, W: 6, C: 32, region: stripe(2), ratio: 0.25, tau: Infinity, dtype: 'float32' }),
  mk({ B: 1, P: 7, H: 1, W: 13, C: 8, ratio: 0.5, dtype: 'float32' }),
  mk({ B: 2, P: 0, H: 13, W: 1, C: 16, region: global, ratio: 0.9, tau: 10, shareBatch: true, dtype: 'float32' }),
  mk({ B: 1, P: 7, H: 9, W: 6, C: 16, region: global, ratio: 0.5, tau: Infinity, dtype: 'float16' }),
  mk({ B: 2, P: 0, H: 5, W: 7, C: 8, region: tile(3, 2), ratio: 0.9, tau: 1000, dtype: 'float16' }),
  mk({ B: 2, P: 7, H: 13, W: 1, C: 32, region: stripe(3), ratio: 0.75, tau: 1000, shareBatch: true, dtype: 'bfloat16' }),
  mk({ B: 1, P: 0, H: 1, W: 13, C: 8, region: global, ratio: 0.25, tau: Infinity, dtype: 'bfloat16' }),
  mk({ B: 2, P: 0, H: 9, W: 6, C: 16, region: tile(4, 4), ratio: 0, tau: 1000, dtype: 'float32' }),
  mk({ B: 1, P: 7, H: 5, W: 7, C: 8, region: stripe(1), ratio: 0, tau: Infinity, dtype: 'float16' }),
  mk({ B: 2, P: 0, H: 8, W: 8, C: 8, region: global, ratio: 0, tau: 10, dtype: 'bfloat16' }),
  mk({ B: 2, P: 0, H: 6, W: 10, C: 64, region: tile(2, 3), ratio: 0.5, tau: 10, dtype: 'bfloat16' }),
  mk({ B: 2, P: 7, H: 8, W: 8, C: 24, region: tile(4, 4), ratio: 0.75, tau: Infinity, shareBatch: true, dtype: 'float32' }),
  mk({ B: 1, P: 0, H: 7, W: 5, C: 8, region: tile(5, 5), ratio: 0.25, tau: 10, dtype: 'float16' }),
  mk({ B: 2, P: 7, H: 9, W: 6, C: 16, region: tile(3, 2), ratio: 0.9, tau: Infinity, dtype: 'bfloat16' }),
  mk({ B: 2, P: 0, H: 5, W: 7, C: 64, region: global, ratio: 0.75, tau: 1000, dtype: 'float32' }),
  mk({ B: 1, P: 0, H: 4, W: 4, C: 8, region: tile(4, 4), ratio: 0.5, tau: 1000, dtype: 'float32', mean: 1 }),
  mk({ B: 1, P: 0, H: 13, W: 1, C: 8, region: tile(1, 1), ratio: 0.5, tau: 1000, dtype: 'float32' }),
  mk({ B: 2, P: 0, H: 6, W: 10, C: 8, region: stripe(4), ratio: 0.25, tau: Infinity, shareBatch: true, dtype: 'float32' }),
  mk({ B: 2, P: 7, H: 1, W: 13, C: 16, region: stripe(1), ratio: 0.75, tau: 10, shareBatch: true, dtype: 'float16' }),
  mk({ B: 2, P: 7, H: 9, W: 6, C: 32, ratio: 0.5, dtype: 'float16' }),
  mk({ B: 1, P: 7, H: 5, W: 7, C: 16, region: tile(3, 2), ratio: 0.25, tau: 1000, dtype: 'bfloat16', mean: 0.5 }),
  mk({ B: 2, P: 0, H: 7, W: 9, C: 16, region: tile(2, 2), ratio: 0.75, tau: 1000, dtype: 'float32' }),
];

/** The PlanOptions of a case. */
export function planOptions(c: PlanCase): toma.PlanOptions {
  const o: toma.PlanOptions = { grid: [c.H, c.W], ratio: c.ratio };
  if (c.region) o.region = c.region;
  if (c.tau !== undefined) o.tau = c.tau;
  if (c.P) o.prefix = c.P;
  if (c.shareBatch !== undefined) o.shareBatch = c.shareBatch;
  return o;
}

/** The shape [B, P + N, C] of a case's hidden states. */
export function caseShape(c: PlanCase, C = c.C): number[] {
  return [c.B, c.P + c.H * c.W, C];
}
