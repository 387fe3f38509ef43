// merge (SPEC section 5) against the float64 reference: every plan case, all dtypes, the prefix
// copied unchanged, ratio 0 = identity, any channel count, linearity (commutes with projections).
import * as toma from '../lib';
import { expectClose, expectTensor, guardInputs, randomTensor, tolerance, values } from './helpers/data';
import { PLAN_CASES, caseShape, planOptions } from './helpers/cases';
import { ops, referencePlan } from './reference';

describe('merge matches the reference', () => {
  test.each(PLAN_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const shape = caseShape(c);
    const h = randomTensor(`merge plan ${c.name}`, shape, c.dtype, 1, c.mean ?? 0);
    const plan = await toma.computePlan(h.t, planOptions(c));
    const ref = referencePlan(h.x, shape, planOptions(c));
    // Merge the hidden states themselves and a second tensor (as q/k/v are merged with x's plan).
    for (const which of ['x', 'other']) {
      const src = which === 'x' ? h : randomTensor(`merge other ${c.name}`, shape, c.dtype);
      const check = guardInputs(src.t, h.t);
      const y = await toma.merge(src.t, plan);
      check();
      expectTensor(y, [c.B, c.P + ref.K, c.C], c.dtype);
      const want = ops.merge(src.x, c.C, ref);
      expectClose(values(y), want.x, tolerance(c.dtype, 'linear'), `${c.name} merge(${which})`);
      // The prefix is copied bit for bit.
      for (let b = 0; b < c.B; b++) {
        const got = Array.from(y.data.subarray(b * (c.P + ref.K) * c.C, (b * (c.P + ref.K) + c.P) * c.C));
        const orig = Array.from(src.t.data.subarray(b * shape[1] * c.C, (b * shape[1] + c.P) * c.C));
        expect(got).toEqual(orig);
      }
    }
  });
});

describe('merge properties', () => {
  test.each([
    ['float32', 1000, { kind: 'tile', th: 3, tw: 2 }],
    ['float16', 10, { kind: 'global' }],
    ['bfloat16', Infinity, { kind: 'stripe', rows: 2 }],
    ['float32', 10, { kind: 'tile', th: 4, tw: 4 }],
  ] as Array<[toma.Dtype, number, toma.Region]>)('ratio 0 is the identity: K == N, merge(x) == x in destination order (%s, tau %p, %j)', async (dtype, tau, region) => {
    const [B, P, H, W, C] = [2, 7, 9, 6, 16];
    const { t } = randomTensor(`merge identity ${dtype} ${tau} ${region.kind}`, [B, P + H * W, C], dtype);
    const plan = await toma.computePlan(t, { grid: [H, W], ratio: 0, tau, region, prefix: P });
    expect(plan.K).toBe(H * W);
    // Every token is its own destination. Merged tokens come in plan.destinations order (region
    // order), which is the token order itself for stripes and the global region.
    const permuted = (src: toma.Tensor, Cs: number) => {
      const out = new Array<number>(src.data.length);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < P * Cs; i++) out[b * (P + H * W) * Cs + i] = src.data[b * (P + H * W) * Cs + i];
        for (let j = 0; j < plan.K; j++) {
          const tok = plan.destinations[b * plan.K + j];
          for (let c = 0; c < Cs; c++) out[(b * (P + H * W) + P + j) * Cs + c] = src.data[(b * (P + H * W) + P + tok) * Cs + c];
        }
      }
      return out;
    };
    for (let b = 0; b < B; b++) {
      const own = Array.from(plan.destinations.subarray(b * plan.K, (b + 1) * plan.K)).sort((a, c) => a - c);
      expect(own).toEqual(Array.from({ length: H * W }, (_, i) => i));
    }
    const y = await toma.merge(t, plan);
    expectTensor(y, [B, P + H * W, C], dtype);
    expect(Array.from(y.data)).toEqual(permuted(t, C));
    if (region.kind !== 'tile') expect(Array.from(y.data)).toEqual(Array.from(t.data));
    const other = randomTensor(`merge identity other ${dtype} ${tau}`, [B, P + H * W, 8], dtype);
    const yo = await toma.merge(other.t, plan);
    expect(Array.from(yo.data)).toEqual(permuted(other.t, 8));
    // And unmerge puts every token back where it was, bit for bit.
    expect(Array.from((await toma.unmerge(yo, plan)).data)).toEqual(Array.from(other.t.data));
  });

  test('a plan merges tensors of any channel count (it fixes B, P + N, not C)', async () => {
    const [B, P, H, W] = [2, 7, 5, 7];
    const h = randomTensor('merge channels x', [B, P + H * W, 32]);
    const o: toma.PlanOptions = { grid: [H, W], ratio: 0.5, tau: 10, prefix: P, region: { kind: 'tile', th: 3, tw: 2 } };
    const plan = await toma.computePlan(h.t, o);
    const ref = referencePlan(h.x, [B, P + H * W, 32], o);
    for (const C of [1, 3, 8, 96]) {
      const z = randomTensor(`merge channels ${C}`, [B, P + H * W, C]);
      const y = await toma.merge(z.t, plan);
      expectTensor(y, [B, P + plan.K, C], 'float32');
      expectClose(values(y), ops.merge(z.x, C, ref).x, 1e-5, `C=${C}`);
    }
  });

  test('merge is linear and commutes with a projection with bias: merge(xW + b) = merge(x)W + b', async () => {
    const [B, P, H, W, C, D] = [2, 7, 9, 6, 16, 12];
    const h = randomTensor('merge linear x', [B, P + H * W, C]);
    const plan = await toma.computePlan(h.t, { grid: [H, W], ratio: 0.75, tau: 10, prefix: P });
    const Wm = randomTensor('merge linear W', [1, C, D]).x;
    const bias = randomTensor('merge linear b', [1, 1, D]).x;
    const project = (x: Float64Array, T: number): Float32Array => {
      const out = new Float32Array(B * T * D);
      for (let r = 0; r < B * T; r++)
        for (let d = 0; d < D; d++) {
          let s = bias[d];
          for (let c = 0; c < C; c++) s += x[r * C + c] * Wm[c * D + d];
          out[r * D + d] = s;
        }
      return out;
    };
    const xw = project(h.x, P + H * W);
    const left = await toma.merge({ data: xw, shape: [B, P + H * W, D], dtype: 'float32' }, plan);
    const mx = values(await toma.merge(h.t, plan));
    const right = project(mx, P + plan.K);
    expectClose(values(left), Float64Array.from(right), 1e-5, 'merge(xW+b) vs merge(x)W+b');
    // Linearity: merge(a x + y) = a merge(x) + merge(y).
    const y2 = randomTensor('merge linear y', [B, P + H * W, C]);
    const comb = Float32Array.from(h.x.map((v, i) => 2.5 * v - y2.x[i]));
    const got = values(await toma.merge({ data: comb, shape: [B, P + H * W, C], dtype: 'float32' }, plan));
    const my = values(await toma.merge(y2.t, plan));
    expectClose(got, mx.map((v, i) => 2.5 * v - my[i]), 1e-5, 'linearity');
  });

  test('merged tokens are weighted means: a token-constant tensor stays constant', async () => {
    const [H, W, C] = [5, 7, 8];
    const h = randomTensor('merge mean x', [1, H * W, C]);
    const plan = await toma.computePlan(h.t, { grid: [H, W], ratio: 0.5, tau: 10 });
    const row = randomTensor('merge mean row', [1, 1, C]).t.data as Float32Array;
    const data = new Float32Array(H * W * C);
    for (let t = 0; t < H * W; t++) data.set(row, t * C);
    const y = await toma.merge({ data, shape: [1, H * W, C], dtype: 'float32' }, plan);
    const want = new Float64Array(plan.K * C);
    for (let j = 0; j < plan.K; j++) for (let c = 0; c < C; c++) want[j * C + c] = row[c];
    expectClose(values(y), want, 1e-6, 'constant');
  });

  // SPEC 1: half types travel as Uint16Array; Float16Array is accepted where the runtime has it.
  const F16A = (globalThis as { Float16Array?: new (a: ArrayLike<number>) => ArrayBufferView & ArrayLike<number> }).Float16Array;
  (F16A ? test : test.skip)('a Float16Array is accepted for dtype float16 and gives the Uint16Array result', async () => {
    const [B, H, W, C] = [1, 5, 7, 8];
    const h = randomTensor('merge Float16Array', [B, H * W, C], 'float16');
    const asF16 = { data: new F16A!(h.x) as unknown as Uint16Array, shape: [B, H * W, C], dtype: 'float16' as const };
    const o: toma.PlanOptions = { grid: [H, W], ratio: 0.5, tau: 10 };
    const p1 = await toma.computePlan(h.t, o);
    const p2 = await toma.computePlan(asF16, o);
    expect(Array.from(p2.destinations)).toEqual(Array.from(p1.destinations));
    const y1 = await toma.merge(h.t, p1);
    const y2 = await toma.merge(asF16, p1);
    expect(Array.from(toma.toFloat32(y2))).toEqual(Array.from(toma.toFloat32(y1)));
  });
});
