// unmerge (SPEC section 5) against the float64 reference, and its relation to merge: for the hard
// plan merge(unmerge(y)) == y; unmerge(merge(x)) is not the identity in general.
import * as toma from '../lib';
import { expectClose, expectTensor, guardInputs, randomTensor, relErr, tolerance, values } from './helpers/data';
import { PLAN_CASES, caseShape, planOptions } from './helpers/cases';
import { ops, referencePlan } from './reference';

describe('unmerge matches the reference', () => {
  test.each(PLAN_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const shape = caseShape(c);
    const h = randomTensor(`unmerge plan ${c.name}`, shape, c.dtype, 1, c.mean ?? 0);
    const plan = await toma.computePlan(h.t, planOptions(c));
    const ref = referencePlan(h.x, shape, planOptions(c));
    const y = randomTensor(`unmerge y ${c.name}`, [c.B, c.P + ref.K, c.C], c.dtype);
    const check = guardInputs(y.t, h.t);
    const out = await toma.unmerge(y.t, plan);
    check();
    expectTensor(out, shape, c.dtype);
    expectClose(values(out), ops.unmerge(y.x, c.C, ref).x, tolerance(c.dtype, 'linear'), `${c.name} unmerge`);
    for (let b = 0; b < c.B; b++) {
      const got = Array.from(out.data.subarray(b * shape[1] * c.C, (b * shape[1] + c.P) * c.C));
      const orig = Array.from(y.t.data.subarray(b * (c.P + ref.K) * c.C, (b * (c.P + ref.K) + c.P) * c.C));
      expect(got).toEqual(orig);
    }
  });
});

describe('unmerge properties', () => {
  test.each(PLAN_CASES.filter((c) => c.tau === Infinity).map((c) => [c.name, c] as const))(
    'hard plan: merge(unmerge(y)) == y (%s)',
    async (_n, c) => {
      const h = randomTensor(`unmerge hard plan ${c.name}`, caseShape(c), c.dtype, 1, c.mean ?? 0);
      const plan = await toma.computePlan(h.t, planOptions(c));
      const y = randomTensor(`unmerge hard y ${c.name}`, [c.B, c.P + plan.K, c.C], c.dtype);
      const back = await toma.merge(await toma.unmerge(y.t, plan), plan);
      expectTensor(back, y.t.shape, c.dtype);
      expectClose(values(back), y.x, tolerance(c.dtype, 'linear'), 'merge(unmerge(y))');
    },
  );

  test('hard plan, float32, 64 channels: merge(unmerge(y)) == y to float32 rounding', async () => {
    const [B, P, H, W, C] = [2, 7, 9, 6, 64];
    const h = randomTensor('unmerge hard f32 plan', [B, P + H * W, C]);
    const plan = await toma.computePlan(h.t, { grid: [H, W], ratio: 0.5, tau: Infinity, prefix: P, region: { kind: 'tile', th: 3, tw: 2 } });
    const y = randomTensor('unmerge hard f32 y', [B, P + plan.K, C]);
    expect(relErr(values(await toma.merge(await toma.unmerge(y.t, plan), plan)), y.x)).toBeLessThan(1e-6);
  });

  test.each([1000, 10, Infinity])('unmerge(merge(x)) is not the identity for ratio > 0 (tau %p)', async (tau) => {
    const [B, H, W, C] = [1, 5, 7, 16];
    const h = randomTensor(`unmerge not identity ${tau}`, [B, H * W, C]);
    const plan = await toma.computePlan(h.t, { grid: [H, W], ratio: 0.5, tau });
    const round = values(await toma.unmerge(await toma.merge(h.t, plan), plan));
    expect(relErr(round, h.x)).toBeGreaterThan(0.05);
  });

  test.each(['float32', 'float16', 'bfloat16'] as toma.Dtype[])('ratio 0: unmerge(y) == y, with merged tokens in destination order (%s)', async (dtype) => {
    const [B, P, H, W, C] = [2, 7, 5, 7, 8];
    const h = randomTensor(`unmerge identity plan ${dtype}`, [B, P + H * W, C], dtype);
    for (const region of [{ kind: 'stripe', rows: 2 }, { kind: 'global' }, { kind: 'tile', th: 3, tw: 2 }] as toma.Region[]) {
      const plan = await toma.computePlan(h.t, { grid: [H, W], ratio: 0, tau: 10, prefix: P, region });
      const y = randomTensor(`unmerge identity y ${dtype} ${region.kind}`, [B, P + H * W, C], dtype);
      const out = await toma.unmerge(y.t, plan);
      // x'[P + dest[j]] = y[P + j]; for stripes and the global region dest[j] = j.
      for (let b = 0; b < B; b++)
        for (let j = 0; j < plan.K; j++) {
          const tok = plan.destinations[b * plan.K + j];
          const T = P + H * W;
          expect(Array.from(out.data.subarray((b * T + P + tok) * C, (b * T + P + tok + 1) * C))).toEqual(
            Array.from(y.t.data.subarray((b * T + P + j) * C, (b * T + P + j + 1) * C)),
          );
        }
      if (region.kind !== 'tile') expect(Array.from(out.data)).toEqual(Array.from(y.t.data));
      expect(Array.from((await toma.merge(out, plan)).data)).toEqual(Array.from(y.t.data));
    }
  });

  test('unmerge is the transpose-weighted spread of U: every source receives a convex combination', async () => {
    const [H, W, C] = [9, 6, 8];
    const h = randomTensor('unmerge convex plan', [1, H * W, C]);
    const plan = await toma.computePlan(h.t, { grid: [H, W], ratio: 0.75, tau: 10, region: { kind: 'stripe', rows: 2 } });
    const row = randomTensor('unmerge convex row', [1, 1, C]).t.data as Float32Array;
    const data = new Float32Array(plan.K * C);
    for (let j = 0; j < plan.K; j++) data.set(row, j * C);
    const out = await toma.unmerge({ data, shape: [1, plan.K, C], dtype: 'float32' }, plan);
    const want = new Float64Array(H * W * C);
    for (let t = 0; t < H * W; t++) for (let c = 0; c < C; c++) want[t * C + c] = row[c];
    expectClose(values(out), want, 1e-6, 'constant');
  });
});
