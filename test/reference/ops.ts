// Reference: merge, unmerge (SPEC section 5), attention and merge-attention-unmerge (SPEC section 6),
// float64, plain loops. Tensors are flat row-major [B, T, C] Float64Arrays.
import type { RefPlan } from './plan';

export interface RefTensor {
  x: Float64Array;
  shape: number[];
}

/** y = [prefix; M x_image], [B, P + K, C]. */
export function merge(x: Float64Array, C: number, plan: RefPlan): RefTensor {
  const { B, N, K, P } = plan;
  const T = P + N;
  const y = new Float64Array(B * (P + K) * C);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) for (let c = 0; c < C; c++) y[(b * (P + K) + p) * C + c] = x[(b * T + p) * C + c];
    let off = 0;
    for (const r of plan.regions[b]) {
      const n = r.tokens.length;
      const k = r.destinations.length;
      for (let j = 0; j < k; j++) {
        const yo = (b * (P + K) + P + off + j) * C;
        for (let s = 0; s < n; s++) {
          const w = r.M[j * n + s];
          if (w === 0) continue;
          const xo = (b * T + P + r.tokens[s]) * C;
          for (let c = 0; c < C; c++) y[yo + c] += w * x[xo + c];
        }
      }
      off += k;
    }
  }
  return { x: y, shape: [B, P + K, C] };
}

/** x' = [prefix; U y_merged], [B, P + N, C]. */
export function unmerge(y: Float64Array, C: number, plan: RefPlan): RefTensor {
  const { B, N, K, P } = plan;
  const T = P + N;
  const x = new Float64Array(B * T * C);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) for (let c = 0; c < C; c++) x[(b * T + p) * C + c] = y[(b * (P + K) + p) * C + c];
    let off = 0;
    for (const r of plan.regions[b]) {
      const n = r.tokens.length;
      const k = r.destinations.length;
      for (let s = 0; s < n; s++) {
        const xo = (b * T + P + r.tokens[s]) * C;
        for (let j = 0; j < k; j++) {
          const w = r.U[s * k + j];
          if (w === 0) continue;
          const yo = (b * (P + K) + P + off + j) * C;
          for (let c = 0; c < C; c++) x[xo + c] += w * y[yo + c];
        }
      }
      off += k;
    }
  }
  return { x, shape: [B, T, C] };
}

/**
 * Exact softmax attention per head: q [B, Tq, C], k and v [B, Tk, C], head h owns channels
 * [h * d, (h + 1) * d); scale 1 / sqrt(d) unless given.
 */
export function attention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  B: number,
  Tq: number,
  Tk: number,
  C: number,
  heads: number,
  scale?: number,
  keyBias?: Float64Array,
): Float64Array {
  const d = C / heads;
  const sc = scale ?? 1 / Math.sqrt(d);
  const out = new Float64Array(B * Tq * C);
  const p = new Float64Array(Tk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < Tq; i++) {
        const qo = (b * Tq + i) * C + h * d;
        let mx = -Infinity;
        for (let j = 0; j < Tk; j++) {
          const ko = (b * Tk + j) * C + h * d;
          let s = 0;
          for (let c = 0; c < d; c++) s += q[qo + c] * k[ko + c];
          p[j] = s * sc + (keyBias ? keyBias[b * Tk + j] : 0);
          if (p[j] > mx) mx = p[j];
        }
        let z = 0;
        for (let j = 0; j < Tk; j++) {
          p[j] = Math.exp(p[j] - mx);
          z += p[j];
        }
        for (let j = 0; j < Tk; j++) {
          const w = p[j] / z;
          const vo = (b * Tk + j) * C + h * d;
          for (let c = 0; c < d; c++) out[qo + c] += w * v[vo + c];
        }
      }
    }
  }
  return out;
}

/**
 * unmerge(attention(merge(q), merge(k), merge(v))); with mergeQueries false, attention(q, merge(k),
 * merge(v)) and no unmerge.
 */
export function mergeAttentionUnmerge(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  C: number,
  plan: RefPlan,
  heads: number,
  o: { scale?: number; mergeQueries?: boolean; proportional?: boolean } = {},
): Float64Array {
  const { B, N, K, P } = plan;
  const mk = merge(k, C, plan).x;
  const mv = merge(v, C, plan).x;
  const bias = o.proportional ? keyMassBias(plan) : undefined;
  if (o.mergeQueries === false) return attention(q, mk, mv, B, P + N, P + K, C, heads, o.scale, bias);
  const mq = merge(q, C, plan).x;
  const a = attention(mq, mk, mv, B, P + K, P + K, C, heads, o.scale, bias);
  return unmerge(a, C, plan).x;
}

/**
 * Proportional attention's key bias, [B, P + K]: log of how many tokens each merged token stands
 * for, mass_j = sum_s A[j, s] = sum_s U[s, j]; prefix keys get log 1 = 0.
 */
export function keyMassBias(plan: RefPlan): Float64Array {
  const { B, K, P } = plan;
  const bias = new Float64Array(B * (P + K));
  for (let b = 0; b < B; b++) {
    let off = 0;
    for (const r of plan.regions[b]) {
      const n = r.tokens.length;
      const k = r.destinations.length;
      for (let j = 0; j < k; j++) {
        let m = 0;
        for (let s = 0; s < n; s++) m += r.U[s * k + j];
        bias[b * (P + K) + P + off + j] = Math.log(m);
      }
      off += k;
    }
  }
  return bias;
}
