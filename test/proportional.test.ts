// Proportional attention (mergeAttentionUnmerge's `proportional` option): every merged key's
// score gets + log(mass_j), mass_j = sum_s A[j, s], against the float64 reference.
import * as toma from '../lib';
import { referencePlan } from './reference';
import * as ref from './reference/ops';
import { randomTensor, relErr, tolerance } from './helpers/data';

const cases = [
  { H: 8, W: 8, C: 32, heads: 4, ratio: 0.5, tau: 1000, P: 0, B: 1, mergeQueries: true },
  { H: 7, W: 9, C: 24, heads: 3, ratio: 0.75, tau: 10, P: 7, B: 2, mergeQueries: true },
  { H: 6, W: 5, C: 16, heads: 2, ratio: 0.5, tau: Infinity, P: 0, B: 2, mergeQueries: false },
  { H: 9, W: 6, C: 16, heads: 2, ratio: 0.25, tau: 10, P: 3, B: 1, mergeQueries: false },
];

describe('proportional attention', () => {
  for (const c of cases) {
    const label = `${c.H}x${c.W} C=${c.C} ratio=${c.ratio} tau=${c.tau} P=${c.P} B=${c.B} mergeQueries=${c.mergeQueries}`;
    test(label, async () => {
      const shape = [c.B, c.P + c.H * c.W, c.C];
      const [q, k, v] = ['q', 'k', 'v'].map((n) => randomTensor(`prop ${n} ${label}`, shape));
      const o = { grid: [c.H, c.W] as [number, number], ratio: c.ratio, tau: c.tau, prefix: c.P };
      const plan = await toma.computePlan(k.t, o);
      const rp = referencePlan(k.x, shape, o);
      const out = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, {
        heads: c.heads,
        mergeQueries: c.mergeQueries,
        proportional: true,
      });
      const want = ref.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, rp, c.heads, {
        mergeQueries: c.mergeQueries,
        proportional: true,
      });
      expect(relErr(out.data as Float32Array, want)).toBeLessThanOrEqual(tolerance('float32', 'attention'));
      // The bias changes the result wherever masses differ: the option is not a no-op.
      const plain = ref.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, rp, c.heads, { mergeQueries: c.mergeQueries });
      expect(relErr(plain, want)).toBeGreaterThan(1e-3);
    });
  }

  test('with a ratio-0 plan every mass is 1 and nothing changes', async () => {
    const shape = [1, 36, 16];
    const [q, k, v] = ['q', 'k', 'v'].map((n) => randomTensor(`prop0 ${n}`, shape));
    const plan = await toma.computePlan(k.t, { grid: [6, 6], ratio: 0 });
    const a = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads: 2, proportional: true });
    const b = await toma.attention(q.t, k.t, v.t, { heads: 2 });
    expect(relErr(a.data as Float32Array, b.data as Float32Array)).toBeLessThanOrEqual(1e-6);
  });

  test('a non-boolean proportional is a TypeError', async () => {
    const x = randomTensor('prop bad', [1, 16, 8]).t;
    const plan = await toma.computePlan(x, { grid: [4, 4], ratio: 0.5 });
    await expect(
      toma.mergeAttentionUnmerge(x, x, x, plan, { heads: 2, proportional: 1 as unknown as boolean }),
    ).rejects.toThrow(/options\.proportional must be a boolean/);
  });
});
