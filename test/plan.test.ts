// computePlan (SPEC sections 3-5): K, destinations, per-region M and U against the float64
// reference (soft and hard), plan properties, and the destinations option (weight-only recompute).
import * as toma from '../lib';
import { expectClose, guardInputs, randomTensor } from './helpers/data';
import { PLAN_CASES, caseShape, planOptions } from './helpers/cases';
import { referencePlan, type RefPlan } from './reference';

/** Every region of plan.matrices(b) against the reference's, float32 tolerance (the matrices are float32). */
function expectMatricesMatch(plan: toma.Plan, ref: RefPlan, label: string): void {
  for (let b = 0; b < ref.B; b++) {
    const mats = plan.matrices(b);
    expect(mats.length).toBe(ref.regions[b].length);
    mats.forEach((m, i) => {
      const r = ref.regions[b][i];
      expect(Array.from(m.tokens)).toEqual(r.tokens);
      expect(Array.from(m.destinations)).toEqual(r.destinations);
      expect(m.M).toBeInstanceOf(Float32Array);
      expect(m.U).toBeInstanceOf(Float32Array);
      expectClose(m.M, r.M, 1e-5, `${label} b${b} region ${i} M`);
      expectClose(m.U, r.U, 1e-5, `${label} b${b} region ${i} U`);
    });
  }
}

describe('computePlan matches the reference plan', () => {
  test.each(PLAN_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const shape = caseShape(c);
    const { t, x } = randomTensor(`plan ${c.name}`, shape, c.dtype, 1, c.mean ?? 0);
    const o = planOptions(c);
    const check = guardInputs(t);
    const plan = await toma.computePlan(t, o);
    check();
    const ref = referencePlan(x, shape, o);
    expect(plan).toBeInstanceOf(toma.Plan);
    expect(plan.K).toBe(ref.K);
    expect(plan.B).toBe(c.B);
    expect(plan.N).toBe(c.H * c.W);
    expect(plan.prefix).toBe(c.P);
    expect(plan.grid).toEqual([c.H, c.W]);
    expect(plan.ratio).toBe(c.ratio);
    expect(plan.tau).toBe(c.tau ?? 1000);
    expect(plan.hard).toBe(c.tau === Infinity);
    expect(plan.shareBatch).toBe(!!c.shareBatch);
    expect(plan.region).toEqual(c.region ?? { kind: 'tile', th: 4, tw: 4 });
    expect(plan.destinations).toBeInstanceOf(Int32Array);
    expect(plan.destinations.length).toBe(c.B * ref.K);
    expect(Array.from(plan.destinations)).toEqual(Array.from(ref.destinations));
    for (const d of plan.destinations) expect(d >= 0 && d < c.H * c.W).toBe(true);
    expectMatricesMatch(plan, ref, c.name);
    if (c.ratio === 0) expect(plan.K).toBe(c.H * c.W);
  });
});

describe('plan properties', () => {
  test.each(PLAN_CASES.filter((c) => c.tau !== Infinity).map((c) => [c.name, c] as const))('soft: rows of M and source columns of A sum to 1 (%s)', async (_n, c) => {
    const { t } = randomTensor(`plan rows ${c.name}`, caseShape(c), c.dtype, 1, c.mean ?? 0);
    const plan = await toma.computePlan(t, planOptions(c));
    for (let b = 0; b < c.B; b++) {
      for (const m of plan.matrices(b)) {
        const n = m.tokens.length;
        const k = m.destinations.length;
        for (let d = 0; d < k; d++) {
          let s = 0;
          for (let j = 0; j < n; j++) {
            expect(m.M[d * n + j]).toBeGreaterThanOrEqual(0);
            s += m.M[d * n + j];
          }
          expect(Math.abs(s - 1)).toBeLessThan(1e-5);
        }
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let d = 0; d < k; d++) s += m.U[j * k + d];
          expect(Math.abs(s - 1)).toBeLessThan(1e-5);
        }
      }
    }
  });

  test.each(PLAN_CASES.filter((c) => c.tau === Infinity).map((c) => [c.name, c] as const))(
    'hard: U one-hot, destinations to themselves, M rows the mean of the assigned sources (%s)',
    async (_n, c) => {
      const { t, x } = randomTensor(`plan hard ${c.name}`, caseShape(c), c.dtype, 1, c.mean ?? 0);
      const plan = await toma.computePlan(t, planOptions(c));
      expect(plan.hard).toBe(true);
      const ref = referencePlan(x, caseShape(c), planOptions(c));
      for (let b = 0; b < c.B; b++) {
        plan.matrices(b).forEach((m, ri) => {
          const n = m.tokens.length;
          const k = m.destinations.length;
          const count = new Array<number>(k).fill(0);
          for (let s = 0; s < n; s++) {
            const row = Array.from(m.U.subarray(s * k, (s + 1) * k));
            expect(row.filter((v) => v === 1).length).toBe(1);
            expect(row.filter((v) => v === 0).length).toBe(k - 1);
            count[row.indexOf(1)]++;
          }
          for (let d = 0; d < k; d++) {
            const self = Array.from(m.tokens).indexOf(m.destinations[d]);
            expect(m.U[self * k + d]).toBe(1);
            for (let s = 0; s < n; s++) {
              const want = m.U[s * k + d] === 1 ? 1 / count[d] : 0;
              expect(Math.abs(m.M[d * n + s] - want)).toBeLessThan(1e-6);
            }
          }
          // The assignment is the reference's exactly.
          expect(Array.from(m.U)).toEqual(Array.from(ref.regions[b][ri].U));
        });
      }
    },
  );

  test('hard plan: a source equally similar to two destinations goes to the lower token index', async () => {
    // Grid 1x3, C = 2: tokens (1, 0), (1, 1), (0, 1) with destinations 0 and 2. Token 1 is exactly
    // as similar to both.
    const data = new Float32Array([0.75, 0, 0.5, 0.5, 0, 1.25]);
    const x = { data, shape: [1, 3, 2], dtype: 'float32' as const };
    const plan = await toma.computePlan(x, {
      grid: [1, 3],
      ratio: 0.3,
      region: { kind: 'global' },
      tau: Infinity,
      destinations: new Int32Array([0, 2]),
    });
    const [m] = plan.matrices();
    expect(Array.from(m.U)).toEqual([1, 0, 1, 0, 0, 1]);
    expect(Array.from(m.M)).toEqual([0.5, 0.5, 0, 0, 0, 1]);
  });

  test('tau 1000 on unit vectors is one-hot in practice; tau 10 spreads weight', async () => {
    const shape = [1, 5 * 7, 16];
    const { t } = randomTensor('plan tau contrast', shape);
    const o = { grid: [5, 7] as [number, number], ratio: 0.5, region: { kind: 'tile', th: 3, tw: 2 } as toma.Region };
    const sharp = await toma.computePlan(t, { ...o, tau: 1000 });
    const soft = await toma.computePlan(t, { ...o, tau: 10 });
    const maxU = (p: toma.Plan) => p.matrices().map((m) => {
      const k = m.destinations.length;
      let lo = 1;
      for (let s = 0; s < m.tokens.length; s++) lo = Math.min(lo, Math.max(...m.U.subarray(s * k, (s + 1) * k)));
      return lo;
    });
    expect(Math.min(...maxU(sharp))).toBeGreaterThan(0.9);
    expect(Math.min(...maxU(soft))).toBeLessThan(0.9);
    expect(Array.from(soft.destinations)).toEqual(Array.from(sharp.destinations));
  });

  test('defaults: tile 4x4, tau 1000, prefix 0, shareBatch false', async () => {
    const { t } = randomTensor('plan defaults', [1, 6 * 5, 8]);
    const plan = await toma.computePlan(t, { grid: [6, 5], ratio: 0.5 });
    expect(plan.region).toEqual({ kind: 'tile', th: 4, tw: 4 });
    expect(plan.tau).toBe(1000);
    expect(plan.hard).toBe(false);
    expect(plan.prefix).toBe(0);
    expect(plan.shareBatch).toBe(false);
    expect(plan.matrices(0).length).toBe(4);
    expect(plan.matrices()).toEqual(plan.matrices(0));
  });

  test('matrices(b) is per batch element: weights come from each element\'s own tokens', async () => {
    const shape = [2, 5 * 7, 16];
    const { t, x } = randomTensor('plan per element', shape);
    const o: toma.PlanOptions = { grid: [5, 7], ratio: 0.5, tau: 10, shareBatch: true };
    const plan = await toma.computePlan(t, o);
    const ref = referencePlan(x, shape, o);
    expectMatricesMatch(plan, ref, 'shareBatch');
    expect(Array.from(plan.destinations.subarray(ref.K))).toEqual(Array.from(plan.destinations.subarray(0, ref.K)));
    expect(Array.from(plan.matrices(1)[0].M)).not.toEqual(Array.from(plan.matrices(0)[0].M));
  });
});

describe('the destinations option: weight-only recompute', () => {
  test.each([
    ['float32', 1000, false],
    ['float16', 10, false],
    ['bfloat16', Infinity, false],
    ['float32', 10, true],
  ] as Array<[toma.Dtype, number, boolean]>)('%s tau %p shareBatch %p', async (dtype, tau, shareBatch) => {
    const [B, P, H, W, C] = [2, 7, 9, 6, 16];
    const shape = [B, P + H * W, C];
    const o: toma.PlanOptions = { grid: [H, W], ratio: 0.75, region: { kind: 'tile', th: 3, tw: 2 }, tau, prefix: P, shareBatch };
    const first = randomTensor(`plan dest first ${dtype} ${tau} ${shareBatch}`, shape, dtype);
    const later = randomTensor(`plan dest later ${dtype} ${tau} ${shareBatch}`, shape, dtype);
    const p1 = await toma.computePlan(first.t, o);
    const dests = p1.destinations.slice();
    const check = guardInputs(later.t, { data: dests });
    const p2 = await toma.computePlan(later.t, { ...o, destinations: dests });
    check();
    // The destinations are kept even though the later tokens would choose others.
    expect(Array.from(p2.destinations)).toEqual(Array.from(p1.destinations));
    const fresh = await toma.computePlan(later.t, o);
    expect(Array.from(fresh.destinations)).not.toEqual(Array.from(p1.destinations));
    const ref = referencePlan(later.x, shape, { ...o, destinations: dests });
    expectMatricesMatch(p2, ref, 'weight-only');
  });

  test('a shared [K] list applies to every batch element', async () => {
    const [B, H, W, C] = [2, 5, 7, 8];
    const shape = [B, H * W, C];
    const o: toma.PlanOptions = { grid: [H, W], ratio: 0.5, tau: 10 };
    const a = randomTensor('plan dest shared a', [1, H * W, C]);
    const x = randomTensor('plan dest shared x', shape);
    const p1 = await toma.computePlan(a.t, o);
    expect(p1.destinations.length).toBe(p1.K);
    const p2 = await toma.computePlan(x.t, { ...o, destinations: p1.destinations });
    expect(p2.destinations.length).toBe(B * p1.K);
    expect(Array.from(p2.destinations.subarray(0, p1.K))).toEqual(Array.from(p1.destinations));
    expect(Array.from(p2.destinations.subarray(p1.K))).toEqual(Array.from(p1.destinations));
    expectMatricesMatch(p2, referencePlan(x.x, shape, { ...o, destinations: p1.destinations }), 'shared [K]');
  });

  test('recomputing on the same tokens with their own destinations reproduces the plan', async () => {
    const shape = [2, 7 + 8 * 8, 24];
    const { t } = randomTensor('plan dest same', shape);
    const o: toma.PlanOptions = { grid: [8, 8], ratio: 0.25, prefix: 7, tau: 10 };
    const p1 = await toma.computePlan(t, o);
    const p2 = await toma.computePlan(t, { ...o, destinations: p1.destinations });
    for (let b = 0; b < 2; b++) {
      const m1 = p1.matrices(b);
      const m2 = p2.matrices(b);
      m1.forEach((m, i) => {
        expectClose(m2[i].M, m.M, 1e-6, 'M');
        expectClose(m2[i].U, m.U, 1e-6, 'U');
      });
    }
  });
});
