// The baselines against independent TypeScript references written from their descriptions (the
// issue's text and tomesd / ToDo), not from the C++:
// - ToMeSD: one destination per whole sy x sx cell (a random position from std::mt19937_64(seed)
//   as rng() % (sx * sy), or the top-left token), leftover rows and columns are sources, each
//   source matched to its most cosine-similar destination, sources stably sorted by that score
//   (descending), the top r = floor(ratio * N) merged into their destination by mean (destination
//   included), merged sequence = unmerged sources then destinations (token order each), unmerge
//   copies.
// - ToDo: keys and values mean-pooled over the cells of a round(H sqrt(1 - r)) x round(W sqrt(1 - r))
//   grid (2x2 cells at ratio 0.75 on even grids), queries kept, nothing unmerged.
// Everything here is computed in float64 from the float32 inputs.
import * as toma from '../lib';
import { todoAssignment, todoGrid } from '../lib/processor/baselines';

// ---------------------------------------------------------------------------------------------
// Small self-contained helpers (seeded data, error measure).

function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussianData(n: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u() + 1e-12));
    const th = 2 * Math.PI * u();
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
  return out;
}

function relErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(out.length).toBe(ref.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(out[i])) return NaN;
    num += (out[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

function expectRel(out: ArrayLike<number>, ref: ArrayLike<number>, tol: number): void {
  const e = relErr(out, ref);
  if (!(e <= tol)) throw new Error(`relative error ${e} exceeds ${tol}`);
}

// ---------------------------------------------------------------------------------------------
// std::mt19937_64 (C++11 [rand.predef]): w=64, n=312, m=156, r=31, a=0xB5026F5AA96619E9,
// u=29, d=0x5555555555555555, s=17, b=0x71D67FFFEDA60000, t=37, c=0xFFF7EEE000000000, l=43,
// f=6364136223846793005.

const M64 = (1n << 64n) - 1n;

class Mt19937_64 {
  private mt: bigint[] = new Array(312);
  private i = 312;

  constructor(seed: bigint | number) {
    this.mt[0] = BigInt(seed) & M64;
    for (let i = 1; i < 312; i++) {
      const p = this.mt[i - 1];
      this.mt[i] = (6364136223846793005n * (p ^ (p >> 62n)) + BigInt(i)) & M64;
    }
  }

  next(): bigint {
    if (this.i >= 312) {
      const upper = M64 ^ ((1n << 31n) - 1n);
      const lower = (1n << 31n) - 1n;
      for (let k = 0; k < 312; k++) {
        const y = (this.mt[k] & upper) | (this.mt[(k + 1) % 312] & lower);
        let v = this.mt[(k + 156) % 312] ^ (y >> 1n);
        if (y & 1n) v ^= 0xb5026f5aa96619e9n;
        this.mt[k] = v;
      }
      this.i = 0;
    }
    let y = this.mt[this.i++];
    y ^= (y >> 29n) & 0x5555555555555555n;
    y ^= (y << 17n) & 0x71d67fffeda60000n;
    y ^= (y << 37n) & 0xfff7eee000000000n;
    y ^= y >> 43n;
    return y & M64;
  }
}

// ---------------------------------------------------------------------------------------------
// ToMeSD reference.

interface TomesdRef {
  K: number;
  /** [B, N]: token -> merged index. */
  assign: Int32Array;
  /** [B, K]: the token whose place each merged index takes. */
  reps: Int32Array;
  /** Destination tokens (shared by the batch). */
  dst: number[];
  /** [B][source position] -> destination position (argmax) and its score. */
  best: number[][];
  merged: boolean[][];
}

interface TomesdCfg {
  B: number;
  P: number;
  H: number;
  W: number;
  C: number;
  ratio: number;
  sx?: number;
  sy?: number;
  random: boolean;
  seed: number;
}

function tomesdReference(x: Float32Array, c: TomesdCfg): TomesdRef {
  const { B, P, H, W, C } = c;
  const sx = c.sx ?? 2;
  const sy = c.sy ?? 2;
  const N = H * W;
  const r = Math.floor(c.ratio * N);
  // Destinations: one per whole cell, chosen in cell row-major order.
  const rng = new Mt19937_64(c.seed);
  const isDst = new Array<boolean>(N).fill(false);
  for (let cy = 0; cy < Math.floor(H / sy); cy++)
    for (let cx = 0; cx < Math.floor(W / sx); cx++) {
      const k = c.random ? Number(rng.next() % BigInt(sx * sy)) : 0;
      const row = cy * sy + Math.floor(k / sx);
      const col = cx * sx + (k % sx);
      isDst[row * W + col] = true;
    }
  const dst: number[] = [];
  const src: number[] = [];
  for (let t = 0; t < N; t++) (isDst[t] ? dst : src).push(t);
  const K = N - r;
  const assign = new Int32Array(B * N);
  const reps = new Int32Array(B * K);
  const bestAll: number[][] = [];
  const mergedAll: boolean[][] = [];
  for (let b = 0; b < B; b++) {
    const unit = (t: number): Float64Array => {
      const v = new Float64Array(C);
      let n2 = 0;
      for (let ch = 0; ch < C; ch++) {
        v[ch] = x[(b * (P + N) + P + t) * C + ch];
        n2 += v[ch] * v[ch];
      }
      const inv = 1 / Math.max(Math.sqrt(n2), 1e-6);
      for (let ch = 0; ch < C; ch++) v[ch] *= inv;
      return v;
    };
    const us = src.map(unit);
    const ud = dst.map(unit);
    const best: number[] = [];
    const score: number[] = [];
    for (const a of us) {
      let bi = 0;
      let bv = -Infinity;
      ud.forEach((d, j) => {
        let s = 0;
        for (let ch = 0; ch < C; ch++) s += a[ch] * d[ch];
        if (s > bv) (bv = s), (bi = j);
      });
      best.push(bi);
      score.push(bv);
    }
    // Stable sort, descending score (Array.prototype.sort is stable).
    const order = src.map((_, i) => i).sort((i, j) => score[j] - score[i]);
    const merged = new Array<boolean>(src.length).fill(false);
    for (let i = 0; i < r; i++) merged[order[i]] = true;
    let j = 0;
    src.forEach((t, i) => {
      if (!merged[i]) {
        assign[b * N + t] = j;
        reps[b * K + j] = t;
        j++;
      }
    });
    const base = j;
    dst.forEach((t, d) => {
      assign[b * N + t] = base + d;
      reps[b * K + base + d] = t;
    });
    src.forEach((t, i) => {
      if (merged[i]) assign[b * N + t] = base + best[i];
    });
    bestAll.push(best);
    mergedAll.push(merged);
  }
  return { K, assign, reps, dst, best: bestAll, merged: mergedAll };
}

/** Mean of the tokens sent to each merged index; prefix copied in front. [B, P + K, C]. */
function meanMerge(x: Float32Array, B: number, P: number, N: number, C: number, assign: Int32Array, K: number): Float64Array {
  const out = new Float64Array(B * (P + K) * C);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++)
      for (let ch = 0; ch < C; ch++) out[(b * (P + K) + p) * C + ch] = x[(b * (P + N) + p) * C + ch];
    const count = new Float64Array(K);
    for (let t = 0; t < N; t++) {
      const j = assign[b * N + t];
      count[j]++;
      for (let ch = 0; ch < C; ch++) out[(b * (P + K) + P + j) * C + ch] += x[(b * (P + N) + P + t) * C + ch];
    }
    for (let j = 0; j < K; j++) {
      expect(count[j]).toBeGreaterThan(0);
      for (let ch = 0; ch < C; ch++) out[(b * (P + K) + P + j) * C + ch] /= count[j];
    }
  }
  return out;
}

/** Unmerge by copy: token t takes its merged index's row; prefix copied back. [B, P + N, C]. */
function copyUnmerge(y: ArrayLike<number>, B: number, P: number, N: number, C: number, assign: Int32Array, K: number): Float64Array {
  const out = new Float64Array(B * (P + N) * C);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++)
      for (let ch = 0; ch < C; ch++) out[(b * (P + N) + p) * C + ch] = y[(b * (P + K) + p) * C + ch];
    for (let t = 0; t < N; t++)
      for (let ch = 0; ch < C; ch++)
        out[(b * (P + N) + P + t) * C + ch] = y[(b * (P + K) + P + assign[b * N + t]) * C + ch];
  }
  return out;
}

/** Exact softmax attention per head in float64: [B, Tq, C] x [B, Tk, C] -> [B, Tq, C]. */
function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  B: number,
  Tq: number,
  Tk: number,
  C: number,
  heads: number,
): Float64Array {
  const hd = C / heads;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(B * Tq * C);
  const s = new Float64Array(Tk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < Tq; i++) {
        let mx = -Infinity;
        for (let j = 0; j < Tk; j++) {
          let d = 0;
          for (let e = 0; e < hd; e++) d += q[(b * Tq + i) * C + h * hd + e] * k[(b * Tk + j) * C + h * hd + e];
          s[j] = d * scale;
          if (s[j] > mx) mx = s[j];
        }
        let sum = 0;
        for (let j = 0; j < Tk; j++) sum += s[j] = Math.exp(s[j] - mx);
        for (let e = 0; e < hd; e++) {
          let acc = 0;
          for (let j = 0; j < Tk; j++) acc += s[j] * v[(b * Tk + j) * C + h * hd + e];
          out[(b * Tq + i) * C + h * hd + e] = acc / sum;
        }
      }
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('std::mt19937_64 in TypeScript (for the random destination per cell)', () => {
  test('the 10000th output of the default-seeded engine is 9981545732273789042 (C++11 requirement)', () => {
    const r = new Mt19937_64(5489);
    for (let i = 0; i < 9999; i++) r.next();
    expect(r.next()).toBe(9981545732273789042n);
  });

  test('rng() % 4 for small seeds matches the C++ standard library', () => {
    // Printed by g++ (libstdc++) for std::mt19937_64 rng(seed); rng() % 4, five times.
    const expected: Record<number, number[]> = { 0: [2, 3, 1, 2, 0], 1: [0, 2, 2, 2, 0], 42: [2, 0, 2, 2, 1], 2147483647: [3, 1, 2, 2, 2] };
    for (const [seed, seq] of Object.entries(expected)) {
      const r = new Mt19937_64(Number(seed));
      expect(seq.map(() => Number(r.next() % 4n))).toEqual(seq);
    }
  });
});

describe('ToMeSD plan vs an independent TypeScript reference', () => {
  const cases: TomesdCfg[] = [];
  let n = 0;
  for (const [H, W] of [
    [8, 8],
    [9, 7],
  ])
    for (const P of [0, 3])
      for (const B of [1, 2])
        for (const random of [false, true])
          for (const ratio of [0.25, 0.5, 0.75]) {
            const seed = random ? [0, 1, 42, 2147483647, 12345][n++ % 5] : 0;
            cases.push({ B, P, H, W, C: 8 + 8 * (n % 2), ratio, random, seed });
          }
  cases.push({ B: 2, P: 0, H: 9, W: 7, C: 8, ratio: 0.5, sx: 3, sy: 2, random: true, seed: 7 });
  cases.push({ B: 1, P: 2, H: 6, W: 6, C: 8, ratio: 0.6, sx: 3, sy: 3, random: true, seed: 3 });
  cases.push({ B: 2, P: 0, H: 8, W: 8, C: 8, ratio: 0, random: true, seed: 5 });

  const name = (c: TomesdCfg) =>
    `B${c.B} P${c.P} ${c.H}x${c.W} C${c.C} ratio ${c.ratio} cells ${c.sy ?? 2}x${c.sx ?? 2} ` +
    (c.random ? `random seed ${c.seed}` : 'top-left');

  test.each(cases.map((c) => [name(c), c] as const))('%s: K, destinations, merge and unmerge', async (_n, c) => {
    const N = c.H * c.W;
    const x = gaussianData(c.B * (c.P + N) * c.C, 1000 + c.seed * 31 + c.H * 7 + c.P + c.B * 3 + c.ratio * 100);
    const t = toma.tensor(x, [c.B, c.P + N, c.C]);
    const plan = await toma.tomesdPlan(t, {
      grid: [c.H, c.W],
      ratio: c.ratio,
      prefix: c.P,
      sx: c.sx,
      sy: c.sy,
      random: c.random,
      seed: c.seed,
    });
    const ref = tomesdReference(x, c);
    expect(plan.K).toBe(ref.K);
    expect(plan.K).toBe(N - Math.floor(c.ratio * N));
    // One destination per whole cell, each inside its cell.
    const sx = c.sx ?? 2;
    const sy = c.sy ?? 2;
    expect(ref.dst.length).toBe(Math.floor(c.H / sy) * Math.floor(c.W / sx));
    // The merged index of each token, as the plan sees it: its representative token.
    expect(Array.from(plan.destinations)).toEqual(Array.from(ref.reps));

    const merged = await toma.merge(t, plan);
    expect(merged.shape).toEqual([c.B, c.P + ref.K, c.C]);
    expectRel(merged.data as Float32Array, meanMerge(x, c.B, c.P, N, c.C, ref.assign, ref.K), 1e-5);

    const y = gaussianData(c.B * (c.P + ref.K) * c.C, 77 + c.seed);
    const un = await toma.unmerge(toma.tensor(y, [c.B, c.P + ref.K, c.C]), plan);
    expect(un.shape).toEqual([c.B, c.P + N, c.C]);
    expectRel(un.data as Float32Array, copyUnmerge(y, c.B, c.P, N, c.C, ref.assign, ref.K), 1e-5);
  });

  test('random=true, read from the plan alone: one destination per whole cell, r merges, each merged source goes to its argmax', async () => {
    const H = 10;
    const W = 9;
    const C = 12;
    const N = H * W;
    const B = 2;
    const r = Math.floor(0.5 * N);
    const nd = Math.floor(H / 2) * Math.floor(W / 2);
    for (const seed of [0, 9, 2024]) {
      const x = gaussianData(B * N * C, seed + 5);
      const t = toma.tensor(x, [B, N, C]);
      const plan = await toma.tomesdPlan(t, { grid: [H, W], ratio: 0.5, random: true, seed });
      expect(plan.K).toBe(N - r);
      // The assignment, read back through unmerge: merged row j holds the value j.
      const y = new Float32Array(B * plan.K);
      for (let b = 0; b < B; b++) for (let j = 0; j < plan.K; j++) y[b * plan.K + j] = j;
      const a = (await toma.unmerge(toma.tensor(y, [B, plan.K, 1]), plan)).data as Float32Array;
      const unit = (b: number, tok: number) => {
        const v = Array.from(x.subarray((b * N + tok) * C, (b * N + tok + 1) * C));
        const n = Math.hypot(...v);
        return v.map((e) => e / n);
      };
      const dstOf: string[] = [];
      for (let b = 0; b < B; b++) {
        const reps = Array.from(plan.destinations.subarray(b * plan.K, (b + 1) * plan.K));
        // The destinations are the last nd merged indices, one in each whole 2x2 cell.
        const d = reps.slice(plan.K - nd);
        const cells = new Set(d.map((tok) => `${Math.floor(tok / W / 2)},${Math.floor((tok % W) / 2)}`));
        expect(cells.size).toBe(nd);
        for (const tok of d) expect(Math.floor(tok / W)).toBeLessThan(2 * Math.floor(H / 2));
        for (const tok of d) expect(tok % W).toBeLessThan(2 * Math.floor(W / 2));
        dstOf.push(d.join(','));
        let merges = 0;
        for (let tok = 0; tok < N; tok++) {
          const j = a[b * N + tok];
          if (reps[j] === tok) continue;
          merges++;
          // A merged token goes to a destination, its most cosine-similar one.
          expect(j).toBeGreaterThanOrEqual(plan.K - nd);
          const u = unit(b, tok);
          const sims = d.map((dt) => unit(b, dt).reduce((s, e, c) => s + e * u[c], 0));
          const best = sims.indexOf(Math.max(...sims));
          expect(reps[j]).toBe(d[best]);
        }
        expect(merges).toBe(r);
      }
      // The random positions are shared by the batch elements (one draw per cell).
      expect(dstOf[1]).toBe(dstOf[0]);
      const again = await toma.tomesdPlan(t, { grid: [H, W], ratio: 0.5, random: true, seed });
      expect(Array.from(again.destinations)).toEqual(Array.from(plan.destinations));
    }
  });

  test('ratio 0.75 merges every source of a 2x2-cell grid; more than that is a RangeError, never capped', async () => {
    const x = toma.tensor(gaussianData(64 * 8, 3), [1, 64, 8]);
    const p = await toma.tomesdPlan(x, { grid: [8, 8], ratio: 0.75 });
    expect(p.K).toBe(16);
    // 16x16: floor(0.76 * 256) = 194 > 192 sources; 10x10: 76 > 75.
    const x16 = toma.tensor(gaussianData(256 * 8, 4), [1, 256, 8]);
    await expect(toma.tomesdPlan(x16, { grid: [16, 16], ratio: 0.75 })).resolves.toBeDefined();
    await expect(toma.tomesdPlan(x16, { grid: [16, 16], ratio: 0.76 })).rejects.toThrow(RangeError);
    const x10 = toma.tensor(gaussianData(100 * 8, 5), [1, 100, 8]);
    await expect(toma.tomesdPlan(x10, { grid: [10, 10], ratio: 0.76 })).rejects.toThrow(/ratio/);
    // The processor refuses above ToMeSD's 0.75 ceiling at creation, naming it.
    expect(() => toma.createProcessor({ ratio: 0.76, method: 'tomesd' })).toThrow(RangeError);
    expect(() => toma.createProcessor({ ratio: 0.76, method: 'tomesd' })).toThrow(/0\.75/);
    expect(() => toma.createProcessor({ ratio: 0.75, method: 'tomesd' })).not.toThrow();
    // A per-block ratio above the ceiling is refused at the call, naming the block.
    const proc = toma.createProcessor({ ratio: () => 0.8, method: 'tomesd' });
    const err = await proc.attention(x, x, x, { block: 'up.0.attn1', grid: [8, 8], heads: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(/up\.0\.attn1/);
    expect((err as Error).message).toMatch(/0\.75/);
  });

  test('a grid with no whole cell has no destination: any merge is a RangeError naming the ratio or grid', async () => {
    // A 1 x 8 grid has no whole 2x2 cell, so ToMeSD has nothing to merge into (its cap is 0).
    // BUG (csrc/cpu/tomesd_plan.cc): tomesd_max_merges counts all N tokens as mergeable sources
    // when there are no destinations, so the request passes the cap check and the assignment
    // plan then rejects with "assignment[0][0] = 6 is outside [0, K = 6)", naming an argument
    // the caller never passed.
    const x = toma.tensor(gaussianData(8 * 4, 6), [1, 8, 4]);
    await expect(toma.tomesdPlan(x, { grid: [1, 8], ratio: 0 })).resolves.toBeDefined();
    const err = await toma.tomesdPlan(x, { grid: [1, 8], ratio: 0.25 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(/options\.(ratio|grid)/);
  });

  test('processor method tomesd (top-left destinations) equals merge-attention-unmerge by the reference', async () => {
    const H = 8;
    const W = 6;
    const N = H * W;
    const P = 2;
    const B = 2;
    const C = 16;
    const heads = 2;
    const T = P + N;
    const q = gaussianData(B * T * C, 11);
    const k = gaussianData(B * T * C, 12);
    const v = gaussianData(B * T * C, 13);
    const proc = toma.createProcessor({ ratio: 0.5, method: 'tomesd', seed: false });
    proc.beginImage();
    proc.beginStep(0);
    const out = await proc.attention(toma.tensor(q, [B, T, C]), toma.tensor(k, [B, T, C]), toma.tensor(v, [B, T, C]), {
      block: 'blk',
      grid: [H, W],
      heads,
      prefix: P,
    });
    // Destinations are matched on k (the default selection tokens).
    const ref = tomesdReference(k, { B, P, H, W, C, ratio: 0.5, random: false, seed: 0 });
    const mq = meanMerge(q, B, P, N, C, ref.assign, ref.K);
    const mk = meanMerge(k, B, P, N, C, ref.assign, ref.K);
    const mv = meanMerge(v, B, P, N, C, ref.assign, ref.K);
    const att = attentionRef(mq, mk, mv, B, P + ref.K, P + ref.K, C, heads);
    expect(out.shape).toEqual([B, T, C]);
    expectRel(out.data as Float32Array, copyUnmerge(att, B, P, N, C, ref.assign, ref.K), 1e-4);
    expect(proc.stats().meanRatio).toBeCloseTo(1 - ref.K / N, 12);
  });

  test('processor method tomesd with a seed is reproducible and the seed matters', async () => {
    const shape = [1, 64, 8];
    const [q, k, v] = [21, 22, 23].map((s) => toma.tensor(gaussianData(64 * 8, s), shape));
    const run = async (seed: number) => {
      const p = toma.createProcessor({ ratio: 0.5, method: 'tomesd', seed });
      p.beginImage();
      p.beginStep(0);
      return Array.from((await p.attention(q, k, v, { block: 'b', grid: [8, 8], heads: 2 })).data);
    };
    const a = await run(3);
    expect(await run(3)).toEqual(a);
    const others = await Promise.all([4, 5, 6].map(run));
    expect(others.some((o) => o.some((x, i) => x !== a[i]))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// ToDo.

/** PyTorch adaptive_avg_pool2d windows: cell i covers [floor(i H / h), ceil((i + 1) H / h)). */
function adaptivePoolRef(x: Float32Array, B: number, P: number, H: number, W: number, C: number, h: number, w: number): Float64Array {
  const K = h * w;
  const N = H * W;
  const out = new Float64Array(B * (P + K) * C);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++)
      for (let ch = 0; ch < C; ch++) out[(b * (P + K) + p) * C + ch] = x[(b * (P + N) + p) * C + ch];
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        const r0 = Math.floor((i * H) / h);
        const r1 = Math.ceil(((i + 1) * H) / h);
        const c0 = Math.floor((j * W) / w);
        const c1 = Math.ceil(((j + 1) * W) / w);
        const n = (r1 - r0) * (c1 - c0);
        for (let r = r0; r < r1; r++)
          for (let c = c0; c < c1; c++)
            for (let ch = 0; ch < C; ch++)
              out[(b * (P + K) + P + i * w + j) * C + ch] += x[(b * (P + N) + P + r * W + c) * C + ch] / n;
      }
  }
  return out;
}

/**
 * Where H is not a multiple of h, the assignment plan cannot hold adaptive_avg_pool2d's
 * overlapping windows; it pools a partition instead: pooled row i holds grid rows
 * [ceil(i H / h), ceil((i + 1) H / h)) (and the same for columns), so every token is in exactly
 * one cell and the cells differ in size by at most one row or column.
 */
function partitionPoolRef(x: Float32Array, B: number, P: number, H: number, W: number, C: number, h: number, w: number): Float64Array {
  const K = h * w;
  const N = H * W;
  const out = new Float64Array(B * (P + K) * C);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++)
      for (let ch = 0; ch < C; ch++) out[(b * (P + K) + p) * C + ch] = x[(b * (P + N) + p) * C + ch];
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        const r0 = Math.ceil((i * H) / h);
        const r1 = Math.ceil(((i + 1) * H) / h);
        const c0 = Math.ceil((j * W) / w);
        const c1 = Math.ceil(((j + 1) * W) / w);
        const n = (r1 - r0) * (c1 - c0);
        expect(n).toBeGreaterThan(0);
        for (let r = r0; r < r1; r++)
          for (let c = c0; c < c1; c++)
            for (let ch = 0; ch < C; ch++)
              out[(b * (P + K) + P + i * w + j) * C + ch] += x[(b * (P + N) + P + r * W + c) * C + ch] / n;
      }
  }
  return out;
}

describe('ToDo pooling vs a hand reference', () => {
  test.each([
    [8, 8, 0.75, 4, 4],
    [64, 64, 0.75, 32, 32],
    [64, 64, 0.5, 45, 45],
    [64, 64, 0.25, 55, 55],
    [9, 7, 0.5, 6, 5],
    [12, 12, 8 / 9, 4, 4],
    [6, 10, 0.75, 3, 5],
    [1, 1, 0.9, 1, 1],
    [3, 40, 0.99, 1, 4],
  ])('%ix%i at ratio %d: a %ix%i pooled grid', (H, W, ratio, h, w) => {
    // round(H sqrt(1 - ratio)) x round(W sqrt(1 - ratio)), at least 1.
    expect(todoGrid(H, W, ratio)).toEqual([h, w]);
    const { assignment, K } = todoAssignment(2, H, W, ratio);
    expect(K).toBe(h * w);
    expect(assignment.length).toBe(2 * H * W);
    const counts = new Array<number>(K).fill(0);
    for (let t = 0; t < H * W; t++) counts[assignment[t]]++;
    for (const n of counts) expect(n).toBeGreaterThan(0);
    for (let t = 0; t < H * W; t++) expect(assignment[H * W + t]).toBe(assignment[t]);
  });

  test.each([
    // Divisible grids: the pooling is exactly adaptive_avg_pool2d (2x2 or 3x3 cells).
    ['8x8 ratio 0.75 (2x2 cells)', 2, 0, 8, 8, 0.75, true],
    ['6x10 ratio 0.75 P3', 1, 3, 6, 10, 0.75, true],
    ['12x12 ratio 8/9 (3x3 cells)', 2, 1, 12, 12, 8 / 9, true],
    // Non-divisible: a balanced partition (see partitionPoolRef).
    ['9x7 ratio 0.5 P2', 2, 2, 9, 7, 0.5, false],
    ['64x64 ratio 0.5', 1, 0, 64, 64, 0.5, false],
  ] as const)('merge by the assignment plan = mean pooling: %s', async (_n, B, P, H, W, ratio, divisible) => {
    const C = 8;
    const N = H * W;
    const [h, w] = todoGrid(H, W, ratio);
    const { assignment, K } = todoAssignment(B, H, W, ratio);
    const plan = await toma.assignmentPlan(assignment, { grid: [H, W], K, prefix: P });
    expect(plan.K).toBe(K);
    const x = gaussianData(B * (P + N) * C, H * 100 + W + P);
    const merged = await toma.merge(toma.tensor(x, [B, P + N, C]), plan);
    const ref = divisible ? adaptivePoolRef(x, B, P, H, W, C, h, w) : partitionPoolRef(x, B, P, H, W, C, h, w);
    if (divisible) expect(adaptivePoolRef(x, B, P, H, W, C, h, w)).toEqual(partitionPoolRef(x, B, P, H, W, C, h, w));
    expectRel(merged.data as Float32Array, ref, 1e-5);
  });

  test.each([
    ['8x8 ratio 0.75 B2', 2, 0, 8, 8, 0.75, 16, 2],
    ['9x7 ratio 0.5 P3 B1', 1, 3, 9, 7, 0.5, 16, 4],
    ['10x6 ratio 0.25 P1 B2', 2, 1, 10, 6, 0.25, 24, 3],
  ] as const)(
    "processor method 'todo' = attention(q, pooled k, pooled v), queries kept: %s",
    async (_n, B, P, H, W, ratio, C, heads) => {
      const N = H * W;
      const T = P + N;
      const q = gaussianData(B * T * C, 31 + H);
      const k = gaussianData(B * T * C, 32 + H);
      const v = gaussianData(B * T * C, 33 + H);
      const proc = toma.createProcessor({ ratio, method: 'todo' });
      proc.beginImage();
      proc.beginStep(0);
      const out = await proc.attention(toma.tensor(q, [B, T, C]), toma.tensor(k, [B, T, C]), toma.tensor(v, [B, T, C]), {
        block: 'b',
        grid: [H, W],
        heads,
        prefix: P,
      });
      expect(out.shape).toEqual([B, T, C]);
      const [h, w] = [Math.max(1, Math.round(H * Math.sqrt(1 - ratio))), Math.max(1, Math.round(W * Math.sqrt(1 - ratio)))];
      const K = h * w;
      const pk = partitionPoolRef(k, B, P, H, W, C, h, w);
      const pv = partitionPoolRef(v, B, P, H, W, C, h, w);
      const ref = attentionRef(q, pk, pv, B, T, P + K, C, heads);
      expectRel(out.data as Float32Array, ref, 1e-4);
      expect(proc.stats().meanRatio).toBeCloseTo(1 - K / N, 12);
    },
  );
});
