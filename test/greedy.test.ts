// selectDestinations (SPEC section 4) against the reference greedy: exact destination sets on
// Gaussian data, layout [B * K] in region order ascending, f(S) equal to the reference's and
// non-decreasing along the greedy, ties to the lowest token index, shareBatch.
import * as toma from '../lib';
import { guardInputs, randomTensor } from './helpers/data';
import { PLAN_CASES, caseShape, planOptions } from './helpers/cases';
import { facilityValue, regions, selectDestinations, selectRegions, similarity, unitRows } from './reference';

describe('selectDestinations matches the reference greedy', () => {
  test.each(PLAN_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const shape = caseShape(c);
    const { t, x } = randomTensor(`greedy ${c.name}`, shape, c.dtype, 1, c.mean ?? 0);
    const o = planOptions(c);
    const check = guardInputs(t);
    const got = await toma.selectDestinations(t, o);
    check();
    const sel = selectRegions(x, shape, o);
    const want = selectDestinations(x, shape, o);
    expect(got).toBeInstanceOf(Int32Array);
    expect(got.length).toBe(want.length);
    expect(Array.from(got)).toEqual(Array.from(want));

    // Layout: per batch element, region order, ascending inside a region, all in [0, N).
    const regs = regions(c.H, c.W, c.region);
    const K = want.length / c.B;
    for (let b = 0; b < c.B; b++) {
      let off = 0;
      for (const tokens of regs) {
        const k = sel[b][regs.indexOf(tokens)].destinations.length;
        const part = Array.from(got.subarray(b * K + off, b * K + off + k));
        for (let i = 0; i < k; i++) {
          expect(tokens).toContain(part[i]);
          if (i > 0) expect(part[i]).toBeGreaterThan(part[i - 1]);
        }
        off += k;
      }
      expect(off).toBe(K);
    }

    // f(S) of the native destinations equals the reference's, and f is non-decreasing along the greedy.
    for (let b = 0; b < c.B; b++) {
      let off = 0;
      for (const r of sel[b]) {
        const k = r.destinations.length;
        const mine = Array.from(got.subarray(b * K + off, b * K + off + k)).map((tok) => r.tokens.indexOf(tok));
        const fNative = facilityValue(r.sim, mine);
        const fRef = facilityValue(r.sim, r.local);
        expect(Math.abs(fNative - fRef)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(fRef)));
        expect(fRef).toBeCloseTo(r.trace.f[r.trace.f.length - 1], 9);
        for (let i = 1; i < r.trace.f.length; i++) expect(r.trace.f[i]).toBeGreaterThanOrEqual(r.trace.f[i - 1]);
        for (const g of r.trace.gains) expect(g).toBeGreaterThanOrEqual(0);
        off += k;
      }
    }

    if (c.shareBatch) for (let b = 1; b < c.B; b++) expect(Array.from(got.subarray(b * K, (b + 1) * K))).toEqual(Array.from(got.subarray(0, K)));
  });

  test.each([
    [16, 20, { kind: 'tile', th: 3, tw: 3 }, 0.5, 8],
    [12, 12, { kind: 'global' }, 0.75, 16],
    [10, 15, { kind: 'stripe', rows: 3 }, 0.25, 12],
  ] as Array<[number, number, toma.Region, number, number]>)('many regions: %ix%i %j ratio %p C %p', async (H, W, region, ratio, C) => {
    const shape = [2, H * W, C];
    const { t, x } = randomTensor(`greedy many ${H}x${W} ${region.kind}`, shape);
    const o = { grid: [H, W] as [number, number], ratio, region };
    const got = await toma.selectDestinations(t, o);
    expect(Array.from(got)).toEqual(Array.from(selectDestinations(x, shape, o)));
  });

  test('computePlan chooses the same destinations as selectDestinations', async () => {
    for (const c of PLAN_CASES.slice(0, 8)) {
      const { t } = randomTensor(`greedy/plan ${c.name}`, caseShape(c), c.dtype, 1, c.mean ?? 0);
      const [d, plan] = await Promise.all([toma.selectDestinations(t, planOptions(c)), toma.computePlan(t, planOptions(c))]);
      expect(plan.destinations).toBeInstanceOf(Int32Array);
      expect(Array.from(plan.destinations)).toEqual(Array.from(d));
    }
  });

  test('shareBatch: false selects per element, true selects on element 0 for all', async () => {
    const shape = [3, 5 * 7, 16];
    const { t, x } = randomTensor('greedy shareBatch', shape);
    const o: toma.PlanOptions = { grid: [5, 7], ratio: 0.5, region: { kind: 'tile', th: 3, tw: 2 } };
    const own = await toma.selectDestinations(t, { ...o, shareBatch: false });
    const shared = await toma.selectDestinations(t, { ...o, shareBatch: true });
    const dflt = await toma.selectDestinations(t, o);
    expect(Array.from(own)).toEqual(Array.from(selectDestinations(x, shape, o)));
    expect(Array.from(dflt)).toEqual(Array.from(own));
    const K = own.length / 3;
    // Independent Gaussian elements choose differently somewhere.
    expect(Array.from(own.subarray(K, 2 * K))).not.toEqual(Array.from(own.subarray(0, K)));
    for (let b = 0; b < 3; b++) expect(Array.from(shared.subarray(b * K, (b + 1) * K))).toEqual(Array.from(own.subarray(0, K)));
  });

  test('the prefix is ignored by the selection', async () => {
    const [H, W, C, P] = [5, 7, 16, 7];
    const a = randomTensor('greedy prefix a', [1, P + H * W, C]);
    const b = randomTensor('greedy prefix b', [1, P, C]);
    const mixed = Float32Array.from(a.t.data as Float32Array);
    mixed.set((b.t.data as Float32Array).subarray(0, P * C), 0);
    const o = { grid: [H, W] as [number, number], ratio: 0.75, prefix: P };
    const d1 = await toma.selectDestinations(a.t, o);
    const d2 = await toma.selectDestinations({ data: mixed, shape: [1, P + H * W, C], dtype: 'float32' }, o);
    expect(Array.from(d2)).toEqual(Array.from(d1));
    expect(Array.from(d1)).toEqual(Array.from(selectDestinations(a.x, [1, P + H * W, C], o)));
  });

  test('ties go to the lowest token index; selected tokens are never picked again', async () => {
    // Every token of the grid is the same random vector: every column sum and every later gain tie,
    // so each region keeps its first k tokens.
    const [H, W, C] = [5, 7, 8];
    const v = randomTensor('greedy ties', [1, 1, C]).t.data as Float32Array;
    const data = new Float32Array(H * W * C);
    for (let t = 0; t < H * W; t++) data.set(v, t * C);
    const region = { kind: 'tile', th: 3, tw: 2 } as const;
    for (const ratio of [0, 0.5, 0.75]) {
      const d = await toma.selectDestinations({ data, shape: [1, H * W, C], dtype: 'float32' }, { grid: [H, W], ratio, region });
      const want = selectDestinations(Float64Array.from(data), [1, H * W, C], { grid: [H, W], ratio, region });
      expect(Array.from(d)).toEqual(Array.from(want));
      const regs = regions(H, W, region);
      let off = 0;
      for (const tokens of regs) {
        const k = Math.min(tokens.length, Math.max(1, Math.floor((1 - ratio) * tokens.length + 0.5)));
        expect(Array.from(d.subarray(off, off + k))).toEqual(tokens.slice(0, k));
        off += k;
      }
    }
  });

  test('greedy reaches at least (1 - 1/e) of the optimum on non-negative similarities (reference, brute force)', () => {
    const [n, C] = [10, 8];
    for (let trial = 0; trial < 4; trial++) {
      const { x } = randomTensor(`greedy brute ${trial}`, [1, n, C], 'float32', 1, 1.5);
      const tokens = Array.from({ length: n }, (_, i) => i);
      const s = similarity(unitRows(x, n, C, 0, 0, tokens));
      if (s.some((row) => row.some((v) => v < 0))) continue;
      for (const k of [2, 3, 4]) {
        const sel = selectRegions(x, [1, n, C], { grid: [1, n], ratio: 1 - k / n, region: { kind: 'global' } })[0][0];
        expect(sel.local.length).toBe(k);
        let best = -Infinity;
        const rec = (start: number, S: number[]) => {
          if (S.length === k) {
            best = Math.max(best, facilityValue(s, S));
            return;
          }
          for (let j = start; j < n; j++) rec(j + 1, [...S, j]);
        };
        rec(0, []);
        expect(facilityValue(s, sel.local)).toBeGreaterThanOrEqual((1 - 1 / Math.E) * best - 1e-12);
      }
    }
  });
});
