// Reference: greedy facility location (SPEC section 4), float64, plain loops.
import { DEFAULT_REGION, destinationCount, regions, type Region } from './regions';

/** u_i = x_i / max(||x_i||, 1e-6) for the listed tokens of batch element b (image token t is row P + t). */
export function unitRows(x: Float64Array, T: number, C: number, P: number, b: number, tokens: number[]): Float64Array[] {
  return tokens.map((t) => {
    const base = (b * T + P + t) * C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[base + c] * x[base + c];
    const inv = 1 / Math.max(Math.sqrt(ss), 1e-6);
    const u = new Float64Array(C);
    for (let c = 0; c < C; c++) u[c] = x[base + c] * inv;
    return u;
  });
}

/** The n x n cosine similarity matrix of unit rows. */
export function similarity(u: Float64Array[]): Float64Array[] {
  const n = u.length;
  const s = u.map(() => new Float64Array(n));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let d = 0;
      for (let c = 0; c < u[i].length; c++) d += u[i][c] * u[j][c];
      s[i][j] = d;
    }
  }
  return s;
}

/** f(S) = sum_i max_{j in S} s_ij, S as local indices. */
export function facilityValue(s: Float64Array[], S: number[]): number {
  let f = 0;
  for (let i = 0; i < s.length; i++) {
    let m = -Infinity;
    for (const j of S) m = Math.max(m, s[i][j]);
    f += m;
  }
  return f;
}

export interface GreedyTrace {
  /** Local indices in the order they were picked. */
  order: number[];
  /** f(S) after each pick. */
  f: number[];
  /** The gain of each pick after the first (f[i] - f[i-1]). */
  gains: number[];
  /** The smallest relative gap between the winner and the runner-up over all picks (near-tie detector). */
  minGap: number;
}

/**
 * Exact ties are common in facility location even on random data: in a region of two tokens both
 * column sums are 1 + s_01, and a mutually-nearest pair gives both members the same gain. The SPEC
 * breaks ties to the lowest token index, so the reference treats values within float64 rounding
 * noise (TIE_EPS relative) as equal and picks the lowest index among them.
 */
export const TIE_EPS = 1e-10;

/** Lowest index whose value is within TIE_EPS of the maximum over the allowed indices; and the runner-up gap. */
function argmaxLowest(vals: Float64Array, allowed: boolean[]): { idx: number; best: number; gap: number } {
  let best = -Infinity;
  for (let j = 0; j < vals.length; j++) if (allowed[j] && vals[j] > best) best = vals[j];
  const tol = TIE_EPS * Math.max(1, Math.abs(best));
  let idx = -1;
  let second = -Infinity;
  for (let j = 0; j < vals.length; j++) {
    if (!allowed[j]) continue;
    if (idx < 0 && vals[j] >= best - tol) idx = j;
    else if (vals[j] < best - tol && vals[j] > second) second = vals[j];
  }
  const gap = second === -Infinity ? Infinity : (best - second) / Math.max(Math.abs(best), 1e-30);
  return { idx, best: vals[idx], gap };
}

/** The greedy of SPEC section 4 on one region's similarity matrix; picks k local indices. */
export function greedy(s: Float64Array[], k: number): GreedyTrace {
  const n = s.length;
  const free = new Array<boolean>(n).fill(true);
  // First pick: argmax_j sum_i s_ij, ties to the lowest index.
  const col = new Float64Array(n);
  for (let j = 0; j < n; j++) for (let i = 0; i < n; i++) col[j] += s[i][j];
  const first = argmaxLowest(col, free);
  let minGap = first.gap;
  const j0 = first.idx;
  free[j0] = false;
  const m = new Float64Array(n);
  for (let i = 0; i < n; i++) m[i] = s[i][j0];
  const order = [j0];
  const f = [facilityValue(s, order)];
  const gains: number[] = [];
  const gain = new Float64Array(n);
  while (order.length < k) {
    for (let j = 0; j < n; j++) {
      gain[j] = 0;
      if (!free[j]) continue;
      for (let i = 0; i < n; i++) gain[j] += Math.max(s[i][j] - m[i], 0);
    }
    const pick = argmaxLowest(gain, free);
    minGap = Math.min(minGap, pick.gap);
    const c = pick.idx;
    free[c] = false;
    for (let i = 0; i < n; i++) m[i] = Math.max(m[i], s[i][c]);
    order.push(c);
    gains.push(pick.best);
    f.push(f[f.length - 1] + pick.best);
  }
  return { order, f, gains, minGap };
}

export interface RegionSelection {
  /** The region's tokens, ascending. */
  tokens: number[];
  /** Destination token indices, ascending. */
  destinations: number[];
  /** Local indices of the destinations (positions in tokens), ascending. */
  local: number[];
  trace: GreedyTrace;
  sim: Float64Array[];
}

export interface SelectOptions {
  grid: [number, number];
  ratio: number;
  region?: Region;
  prefix?: number;
  shareBatch?: boolean;
}

/** Per batch element, per region, the greedy's selection. */
export function selectRegions(x: Float64Array, shape: number[], o: SelectOptions): RegionSelection[][] {
  const [B, T, C] = shape;
  const [H, W] = o.grid;
  const P = o.prefix ?? 0;
  const regs = regions(H, W, o.region ?? DEFAULT_REGION);
  const out: RegionSelection[][] = [];
  for (let b = 0; b < B; b++) {
    if (o.shareBatch && b > 0) {
      out.push(out[0]);
      continue;
    }
    out.push(
      regs.map((tokens) => {
        const sim = similarity(unitRows(x, T, C, P, b, tokens));
        const trace = greedy(sim, destinationCount(tokens.length, o.ratio));
        const local = trace.order.slice().sort((a, c) => a - c);
        return { tokens, destinations: local.map((l) => tokens[l]), local, trace, sim };
      }),
    );
  }
  return out;
}

/** The flat [B * K] destinations: region order, ascending inside a region. */
export function selectDestinations(x: Float64Array, shape: number[], o: SelectOptions): Int32Array {
  const sel = selectRegions(x, shape, o);
  const flat: number[] = [];
  for (const perB of sel) for (const r of perB) flat.push(...r.destinations);
  return Int32Array.from(flat);
}
