// mergeAttentionUnmerge (SPEC section 6) against the float64 composition
// unmerge(attention(merge(q), merge(k), merge(v))), and mergeQueries: false (ToDo-style:
// attention(q, merge(k), merge(v)), no unmerge).
import * as toma from '../lib';
import { expectClose, expectTensor, guardInputs, randomTensor, tolerance, values } from './helpers/data';
import { PLAN_CASES, caseShape, planOptions, type PlanCase } from './helpers/cases';
import { ops, referencePlan } from './reference';

/** Heads for a case's channel count: several where C allows. */
const headsFor = (C: number) => (C % 4 === 0 ? 4 : C % 2 === 0 ? 2 : 1);

async function setup(c: PlanCase, tag: string) {
  const shape = caseShape(c);
  const h = randomTensor(`mau ${tag} x ${c.name}`, shape, c.dtype, 1, c.mean ?? 0);
  const q = randomTensor(`mau ${tag} q ${c.name}`, shape, c.dtype);
  const k = randomTensor(`mau ${tag} k ${c.name}`, shape, c.dtype);
  const v = randomTensor(`mau ${tag} v ${c.name}`, shape, c.dtype);
  const plan = await toma.computePlan(h.t, planOptions(c));
  const ref = referencePlan(h.x, shape, planOptions(c));
  return { shape, h, q, k, v, plan, ref };
}

describe('mergeAttentionUnmerge matches the reference composition', () => {
  test.each(PLAN_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const { shape, q, k, v, plan, ref } = await setup(c, 'full');
    const heads = headsFor(c.C);
    const check = guardInputs(q.t, k.t, v.t);
    const out = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads });
    check();
    expectTensor(out, shape, c.dtype);
    const want = ops.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, ref, heads);
    expectClose(values(out), want, tolerance(c.dtype, 'attention'), `${c.name} fused`);
  });

  test.each(PLAN_CASES.filter((_, i) => i % 2 === 0).map((c) => [c.name, c] as const))('mergeQueries: false (%s)', async (_name, c) => {
    const { shape, q, k, v, plan, ref } = await setup(c, 'kv');
    const heads = headsFor(c.C);
    const check = guardInputs(q.t, k.t, v.t);
    const out = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads, mergeQueries: false });
    check();
    expectTensor(out, shape, c.dtype);
    const want = ops.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, ref, heads, { mergeQueries: false });
    expectClose(values(out), want, tolerance(c.dtype, 'attention'), `${c.name} kv-only`);
  });
});

describe('mergeAttentionUnmerge properties', () => {
  test.each(['float32', 'float16', 'bfloat16'] as toma.Dtype[])('equals the composition of the native ops (%s)', async (dtype) => {
    const c: PlanCase = { name: `compose ${dtype}`, B: 2, P: 7, H: 9, W: 6, C: 32, region: { kind: 'tile', th: 3, tw: 2 }, ratio: 0.5, tau: 10, dtype };
    const { q, k, v, plan, ref } = await setup(c, 'compose');
    const heads = 4;
    const fused = values(await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads }));
    const [mq, mk, mv] = await Promise.all([toma.merge(q.t, plan), toma.merge(k.t, plan), toma.merge(v.t, plan)]);
    const composed = values(await toma.unmerge(await toma.attention(mq, mk, mv, { heads }), plan));
    const want = ops.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, ref, heads);
    expectClose(fused, want, tolerance(dtype, 'attention'), 'fused');
    // The composition rounds to the dtype three times in between; it must still meet the bound.
    expectClose(composed, want, tolerance(dtype, 'attention'), 'composed');
  });

  test('the scale option reaches the attention', async () => {
    const c: PlanCase = { name: 'scale', B: 1, P: 7, H: 5, W: 7, C: 16, ratio: 0.5, tau: 1000, dtype: 'float32' };
    const { q, k, v, plan, ref } = await setup(c, 'scale');
    for (const mergeQueries of [true, false]) {
      const out = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads: 2, scale: 0.61, mergeQueries });
      const want = ops.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, ref, 2, { scale: 0.61, mergeQueries });
      expectClose(values(out), want, 1e-4, `scale, mergeQueries ${mergeQueries}`);
    }
  });

  test.each([{ kind: 'stripe', rows: 3 }, { kind: 'tile', th: 4, tw: 4 }] as toma.Region[])('ratio 0 gives plain attention (%j)', async (region) => {
    const [B, P, H, W, C] = [2, 7, 5, 7, 16];
    const shape = [B, P + H * W, C];
    const h = randomTensor(`mau ratio0 x ${region.kind}`, shape);
    const q = randomTensor(`mau ratio0 q ${region.kind}`, shape);
    const k = randomTensor(`mau ratio0 k ${region.kind}`, shape);
    const v = randomTensor(`mau ratio0 v ${region.kind}`, shape);
    const plan = await toma.computePlan(h.t, { grid: [H, W], ratio: 0, prefix: P, tau: 10, region });
    const want = ops.attention(q.x, k.x, v.x, B, P + H * W, P + H * W, C, 4);
    for (const mergeQueries of [true, false]) {
      const out = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads: 4, mergeQueries });
      expectClose(values(out), want, 1e-4, `ratio 0, mergeQueries ${mergeQueries}`);
    }
  });

  // Blocking: the CPU kernel blocks by 96 queries and 256 keys. Here P + K = 7 + 285 = 292 merged
  // tokens (256 + 36) and P + N = 387 queries (4 * 96 + 3) for mergeQueries: false.
  test.each(['float32', 'float16'] as toma.Dtype[])('a larger case: 19x20 grid, P = 7, C = 128, 4 heads (%s)', async (dtype) => {
    const c: PlanCase = { name: `large ${dtype}`, B: 1, P: 7, H: 19, W: 20, C: 128, ratio: 0.25, tau: 1000, dtype };
    const { shape, q, k, v, plan, ref } = await setup(c, 'large');
    expect(plan.K).toBe(ref.K);
    expect(c.P + plan.K).toBeGreaterThan(256);
    expect((c.P + plan.K) % 96).not.toBe(0);
    const heads = 4;
    const out = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads });
    expectTensor(out, shape, dtype);
    expectClose(values(out), ops.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, ref, heads), tolerance(dtype, 'attention'), 'large fused');
    const kv = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads, mergeQueries: false });
    expectTensor(kv, shape, dtype);
    expectClose(
      values(kv),
      ops.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, ref, heads, { mergeQueries: false }),
      tolerance(dtype, 'attention'),
      'large kv-only',
    );
  });
});
