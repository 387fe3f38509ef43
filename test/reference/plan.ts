// Reference: merge weights M and U (SPEC section 5), soft (finite tau) and hard (tau = Infinity).
import { selectRegions, similarity, unitRows, type SelectOptions } from './greedy';
import { DEFAULT_REGION, destinationCount, regions } from './regions';

export interface RefRegionPlan {
  tokens: number[];
  destinations: number[];
  /** [k, n] row-major. */
  M: Float64Array;
  /** [n, k] row-major. */
  U: Float64Array;
}

export interface RefPlan {
  B: number;
  N: number;
  K: number;
  P: number;
  /** Flat [B * K]. */
  destinations: Int32Array;
  /** Per batch element, per region. */
  regions: RefRegionPlan[][];
}

export interface RefPlanOptions extends SelectOptions {
  tau?: number;
  /** [K] (shared) or [B * K]: keep these destinations, compute only the weights. */
  destinations?: Int32Array;
}

/**
 * Weights of one region. u: the region's unit rows (token order); local: positions of the
 * destinations in the region, ascending.
 */
export function regionWeights(u: Float64Array[], local: number[], tau: number): { M: Float64Array; U: Float64Array } {
  const n = u.length;
  const k = local.length;
  const sim = similarity(u);
  // A[d, s], d over destinations (local order), s over sources.
  const A = new Float64Array(k * n);
  for (let s = 0; s < n; s++) {
    if (tau === Infinity) {
      let dBest = local.indexOf(s);
      if (dBest < 0) {
        let best = -Infinity;
        for (let d = 0; d < k; d++) {
          if (sim[local[d]][s] > best) {
            best = sim[local[d]][s];
            dBest = d;
          }
        }
      }
      A[dBest * n + s] = 1;
    } else {
      let mx = -Infinity;
      for (let d = 0; d < k; d++) mx = Math.max(mx, tau * sim[local[d]][s]);
      let z = 0;
      for (let d = 0; d < k; d++) z += Math.exp(tau * sim[local[d]][s] - mx);
      for (let d = 0; d < k; d++) A[d * n + s] = Math.exp(tau * sim[local[d]][s] - mx) / z;
    }
  }
  const M = new Float64Array(k * n);
  const U = new Float64Array(n * k);
  for (let d = 0; d < k; d++) {
    let row = 0;
    for (let s = 0; s < n; s++) row += A[d * n + s];
    for (let s = 0; s < n; s++) M[d * n + s] = A[d * n + s] / row;
  }
  for (let s = 0; s < n; s++) for (let d = 0; d < k; d++) U[s * k + d] = A[d * n + s];
  return { M, U };
}

/** The whole plan: destinations (greedy, or given) and per-element weights on each element's own tokens. */
export function referencePlan(x: Float64Array, shape: number[], o: RefPlanOptions): RefPlan {
  const [B, T, C] = shape;
  const [H, W] = o.grid;
  const P = o.prefix ?? 0;
  const tau = o.tau ?? 1000;
  const regs = regions(H, W, o.region ?? DEFAULT_REGION);
  const K = regs.reduce((s, r) => s + destinationCount(r.length, o.ratio), 0);
  // Destinations per batch element per region, as token indices.
  const dest: number[][][] = [];
  if (o.destinations) {
    const shared = o.destinations.length === K;
    for (let b = 0; b < B; b++) {
      const base = shared ? 0 : b * K;
      let off = 0;
      dest.push(
        regs.map((r) => {
          const k = destinationCount(r.length, o.ratio);
          const d = Array.from(o.destinations!.subarray(base + off, base + off + k));
          off += k;
          return d;
        }),
      );
    }
  } else {
    const sel = selectRegions(x, shape, o);
    for (let b = 0; b < B; b++) dest.push(sel[b].map((r) => r.destinations));
  }
  const plans: RefRegionPlan[][] = [];
  const flat: number[] = [];
  for (let b = 0; b < B; b++) {
    plans.push(
      regs.map((tokens, ri) => {
        const d = dest[b][ri];
        flat.push(...d);
        const local = d.map((t) => tokens.indexOf(t));
        if (o.ratio === 0) {
          // SPEC section 3: ratio 0 keeps every token, the plan is the identity.
          const n = tokens.length;
          const I = new Float64Array(n * n);
          for (let i = 0; i < n; i++) I[i * n + i] = 1;
          return { tokens, destinations: d, M: I, U: I.slice() };
        }
        const { M, U } = regionWeights(unitRows(x, T, C, P, b, tokens), local, tau);
        return { tokens, destinations: d, M, U };
      }),
    );
  }
  return { B, N: H * W, K, P, destinations: Int32Array.from(flat), regions: plans };
}
