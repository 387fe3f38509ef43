// SPEC section 8: every bad input rejects with a TypeError or RangeError whose message names the
// argument; nothing crashes the process; nothing is written into the caller's input arrays.
import * as toma from '../lib';
import { guardInputs, randomTensor } from './helpers/data';

const [B, P, H, W, C] = [2, 7, 5, 7, 16];
const T = P + H * W;
const OPTS: toma.PlanOptions = { grid: [H, W], ratio: 0.5, prefix: P, region: { kind: 'tile', th: 3, tw: 2 } };

type Ctor = typeof TypeError | typeof RangeError;
type AnyTensor = { data: unknown; shape: unknown; dtype: unknown };

/** A fresh float32 tensor for one call (so a detached or poisoned copy never leaks to another case). */
function fresh(label: string, shape: number[] = [B, T, C], dtype: toma.Dtype = 'float32'): toma.Tensor {
  return randomTensor(`validation ${label}`, shape, dtype).t;
}

/**
 * Runs the call, expects a rejection of the given class (TypeError or RangeError where either is
 * fine) whose message matches `names`, and checks that the inputs were left byte-identical.
 */
async function expectArgError(
  call: () => Promise<unknown>,
  names: RegExp,
  inputs: unknown[],
  ctor?: Ctor,
): Promise<Error> {
  const check = guardInputs(...(inputs.filter((t) => t && typeof t === 'object' && 'data' in (t as object)) as toma.Tensor[]));
  let err: unknown;
  try {
    await call();
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new Error(`expected a rejection naming ${names}, but the call resolved`);
  const isArgError = err instanceof TypeError || err instanceof RangeError;
  if (!isArgError) throw new Error(`expected a TypeError or RangeError, got ${String(err)}`);
  if (ctor) expect(err).toBeInstanceOf(ctor);
  expect((err as Error).message).toMatch(names);
  check();
  return err as Error;
}

function detached(t: toma.Tensor): toma.Tensor {
  const buf = t.data.buffer as ArrayBuffer;
  const view = t.data;
  if (typeof structuredClone === 'function') structuredClone(buf, { transfer: [buf] });
  else if (typeof (buf as unknown as { transfer?: () => ArrayBuffer }).transfer === 'function') (buf as unknown as { transfer: () => ArrayBuffer }).transfer();
  else {
    const { port1 } = new MessageChannel();
    port1.postMessage(buf, [buf]);
    port1.close();
  }
  expect(buf.byteLength).toBe(0);
  return { ...t, data: view };
}

function poisoned(t: toma.Tensor, index: number, value: number): toma.Tensor {
  const data = t.data.slice() as typeof t.data;
  data[index] = value;
  return { ...t, data };
}

// Bit patterns of non-finite half values.
const F16 = { nan: 0x7e00, inf: 0x7c00, ninf: 0xfc00 };
const BF16 = { nan: 0x7fc0, inf: 0x7f80, ninf: 0xff80 };

describe.each([
  ['computePlan', (x: AnyTensor, o: unknown) => toma.computePlan(x as toma.Tensor, o as toma.PlanOptions)],
  ['selectDestinations', (x: AnyTensor, o: unknown) => toma.selectDestinations(x as toma.Tensor, o as toma.PlanOptions)],
] as const)('%s rejects bad input', (op, run) => {
  test('the valid baseline resolves and leaves x untouched', async () => {
    const x = fresh(`${op} ok`);
    const check = guardInputs(x);
    await run(x, OPTS);
    check();
  });

  test.each([
    ['rank 2', [B * T, C]],
    ['rank 4', [B, T, C, 1]],
    ['rank 1', [B * T * C]],
    ['zero channels', [B, T, 0]],
    ['zero batch', [0, T, C]],
    ['fractional dim', [B, T, 16.5]],
    ['negative dim', [B, -T, C]],
  ])('x with a bad shape (%s)', async (_n, shape) => {
    const x = fresh(`${op} shape ${_n}`);
    await expectArgError(() => run({ ...x, shape }, OPTS), /\bx(\.shape)?\b/, [x]);
  });

  test('N != H * W (grid does not match the token count)', async () => {
    const x = fresh(`${op} grid mismatch`);
    await expectArgError(() => run(x, { ...OPTS, grid: [5, 6] }), /grid|x\.shape|H \* W/, [x], RangeError);
    await expectArgError(() => run(x, { ...OPTS, grid: [7, 5], prefix: 6 }), /prefix|x\.shape/, [x], RangeError);
    await expectArgError(() => run(x, { ...OPTS, prefix: 0 }), /prefix|x\.shape/, [x], RangeError);
  });

  test.each([1, -0.1, NaN, Infinity, -Infinity, 1.5, 1.0000001])('ratio %p is rejected, never clamped', async (ratio) => {
    const x = fresh(`${op} ratio ${ratio}`);
    const e = await expectArgError(() => run(x, { ...OPTS, ratio }), /ratio/, [x], RangeError);
    expect(e.message).toMatch(/\[0, 1\)/);
  });

  test('ratio of the wrong type or missing', async () => {
    const x = fresh(`${op} ratio type`);
    await expectArgError(() => run(x, { ...OPTS, ratio: '0.5' }), /ratio/, [x]);
    await expectArgError(() => run(x, { grid: [H, W], prefix: P }), /ratio/, [x]);
  });

  test.each([
    ['missing', undefined],
    ['one entry', [H]],
    ['zero', [0, W]],
    ['fractional', [H, 7.5]],
    ['negative', [-H, -W]],
    ['not an array', 'HxW'],
  ])('grid %s', async (_n, grid) => {
    const x = fresh(`${op} grid ${_n}`);
    await expectArgError(() => run(x, { ...OPTS, grid }), /grid/, [x]);
  });

  test.each([
    ['tile th 0', { kind: 'tile', th: 0, tw: 2 }, /region|th/],
    ['tile tw 0', { kind: 'tile', th: 2, tw: 0 }, /region|tw/],
    ['tile th -1', { kind: 'tile', th: -1, tw: 2 }, /region|th/],
    ['tile th 1.5', { kind: 'tile', th: 1.5, tw: 2 }, /region|th/],
    ['tile th NaN', { kind: 'tile', th: NaN, tw: 2 }, /region|th/],
    ['tile tw Infinity', { kind: 'tile', th: 2, tw: Infinity }, /region|tw/],
    ['tile tw missing', { kind: 'tile', th: 2 }, /region|tw/],
    ['stripe rows 0', { kind: 'stripe', rows: 0 }, /region|rows/],
    ['stripe rows -3', { kind: 'stripe', rows: -3 }, /region|rows/],
    ['unknown kind', { kind: 'hexagon' }, /region|kind/],
    ['null', null, /region/],
  ])('region: %s', async (_n, region, names) => {
    const x = fresh(`${op} region ${_n}`);
    await expectArgError(() => run(x, { ...OPTS, region }), names, [x]);
  });

  test.each([0, -1, NaN, -Infinity])('tau %p', async (tau) => {
    const x = fresh(`${op} tau ${tau}`);
    await expectArgError(() => run(x, { ...OPTS, tau }), /tau/, [x], RangeError);
  });

  test.each([-1, 1.5, NaN])('prefix %p', async (prefix) => {
    const x = fresh(`${op} prefix ${prefix}`);
    await expectArgError(() => run(x, { ...OPTS, prefix }), /prefix/, [x]);
  });

  test('shareBatch of the wrong type', async () => {
    const x = fresh(`${op} shareBatch`);
    await expectArgError(() => run(x, { ...OPTS, shareBatch: 'yes' }), /shareBatch/, [x], TypeError);
  });

  test.each([
    ['float32', NaN, 'image part'],
    ['float32', Infinity, 'image part'],
    ['float32', -Infinity, 'image part'],
    ['float32', NaN, 'prefix'],
    ['float16', F16.nan, 'image part'],
    ['float16', F16.inf, 'image part'],
    ['float16', F16.ninf, 'prefix'],
    ['bfloat16', BF16.nan, 'image part'],
    ['bfloat16', BF16.ninf, 'image part'],
    ['bfloat16', BF16.inf, 'prefix'],
  ] as Array<[toma.Dtype, number, string]>)('%s data holding %p in the %s', async (dtype, value, where) => {
    const x = fresh(`${op} nonfinite ${dtype} ${value} ${where}`, [B, T, C], dtype);
    const index = where === 'prefix' ? C + 3 : (T + P + 11) * C + 5;
    const bad = poisoned(x, index, value);
    await expectArgError(() => run(bad, OPTS), /\bx(\.data)?\b/, [bad]);
  });

  test('data array type does not fit the dtype', async () => {
    const x = fresh(`${op} dtype arrays`);
    await expectArgError(() => run({ ...x, dtype: 'float16' }, OPTS), /\bx(\.data|\.dtype)?\b/, [x], TypeError);
    await expectArgError(() => run({ ...x, dtype: 'bfloat16' }, OPTS), /\bx(\.data|\.dtype)?\b/, [x], TypeError);
    const h = fresh(`${op} dtype arrays half`, [B, T, C], 'float16');
    await expectArgError(() => run({ ...h, dtype: 'float32' }, OPTS), /\bx(\.data|\.dtype)?\b/, [h], TypeError);
    await expectArgError(() => run({ ...x, data: new Float64Array(B * T * C).fill(0.25) }, OPTS), /\bx(\.data)?\b/, [], TypeError);
    await expectArgError(() => run({ ...x, data: Array.from(x.data) }, OPTS), /\bx(\.data)?\b/, [x], TypeError);
    await expectArgError(() => run({ ...x, dtype: 'float64' }, OPTS), /dtype/, [x], TypeError);
  });

  test('data too short for the shape', async () => {
    const x = fresh(`${op} short`);
    await expectArgError(() => run({ ...x, data: x.data.subarray(0, x.data.length - 1) }, OPTS), /\bx(\.data)?\b/, [x], RangeError);
    await expectArgError(() => run({ ...x, data: new Float32Array(x.data.buffer, 0, C) }, OPTS), /\bx(\.data)?\b/, [x], RangeError);
  });

  test('a detached buffer', async () => {
    const x = detached(fresh(`${op} detached`));
    await expectArgError(() => run(x, OPTS), /\bx(\.data)?\b/, [], TypeError);
  });

  test('x or options that are not objects', async () => {
    const x = fresh(`${op} not objects`);
    await expectArgError(() => run(null as unknown as AnyTensor, OPTS), /\bx\b/, [], TypeError);
    await expectArgError(() => run(42 as unknown as AnyTensor, OPTS), /\bx\b/, [], TypeError);
    await expectArgError(() => run({ data: x.data } as AnyTensor, OPTS), /\bx(\.shape|\.dtype)?\b/, [x], TypeError);
    await expectArgError(() => run(x, null), /options/, [x], TypeError);
    await expectArgError(() => run(x, undefined), /options/, [x], TypeError);
  });
});

describe('computePlan rejects bad destinations', () => {
  test('wrong length, out of range, unsorted, from another region, wrong array type', async () => {
    const x = fresh('dest base');
    const plan = await toma.computePlan(x, OPTS);
    const K = plan.K;
    const run = (destinations: unknown) => toma.computePlan(x, { ...OPTS, destinations: destinations as Int32Array });
    const d = plan.destinations;
    const cases: Array<[string, unknown]> = [
      ['too short', d.slice(0, K - 1)],
      ['between K and B * K', d.slice(0, K + 1)],
      ['too long', new Int32Array(3 * K)],
      ['negative', d.slice().fill(-1, 0, 1)],
      ['>= N', d.slice().fill(H * W, K - 1, K)],
      ['plain array', Array.from(d)],
      ['Float32Array', Float32Array.from(d)],
    ];
    const unsorted = d.slice();
    [unsorted[0], unsorted[1]] = [unsorted[1], unsorted[0]];
    cases.push(['unsorted', unsorted]);
    // Region 0 of the 3x2 tiles on 5x7 holds tokens 0, 1, 7, 8, 14, 15: token 2 belongs to region 1.
    const foreign = d.slice();
    foreign[0] = 2;
    cases.push(['token of another region', foreign]);
    const dup = d.slice();
    dup[1] = dup[0];
    cases.push(['duplicate', dup]);
    for (const [name, dest] of cases) {
      const inputs: unknown[] = [x];
      if (ArrayBuffer.isView(dest)) inputs.push({ data: dest });
      try {
        await expectArgError(() => run(dest), /destinations/, inputs);
      } catch (e) {
        throw new Error(`${name}: ${(e as Error).message}`);
      }
    }
  });
});

describe('plan.matrices(b) rejects a bad batch index', () => {
  test.each([2, -1, 0.5, NaN])('b = %p', async (b) => {
    const plan = await toma.computePlan(fresh('matrices'), OPTS);
    expect(() => plan.matrices(b)).toThrow(RangeError);
    expect(() => plan.matrices(b)).toThrow(/\bb\b/);
  });
});

describe.each([
  ['merge', (x: AnyTensor, plan: unknown) => toma.merge(x as toma.Tensor, plan as toma.Plan), 'x', T],
  ['unmerge', (y: AnyTensor, plan: unknown) => toma.unmerge(y as toma.Tensor, plan as toma.Plan), 'y', -1],
] as const)('%s rejects bad input', (op, run, arg, tokens) => {
  let plan: toma.Plan;
  let Tin: number;
  const name = new RegExp(`\\b${arg}(\\.data|\\.shape|\\.dtype)?\\b`);
  beforeAll(async () => {
    plan = await toma.computePlan(fresh(`${op} plan`), OPTS);
    Tin = tokens > 0 ? tokens : P + plan.K;
  });

  test('the valid baseline resolves and leaves its input untouched', async () => {
    const x = fresh(`${op} ok`, [B, Tin, C]);
    const check = guardInputs(x);
    await run(x, plan);
    check();
  });

  test('a fake or missing plan', async () => {
    const x = fresh(`${op} fake plan`, [B, Tin, C]);
    const fakes: unknown[] = [
      { K: plan.K, B: plan.B, N: plan.N, destinations: plan.destinations, matrices: () => [] },
      Object.create(toma.Plan.prototype),
      null,
      undefined,
      x,
      42,
    ];
    for (const fake of fakes) await expectArgError(() => run(x, fake), /plan/, [x], TypeError);
  });

  test('a tensor of another shape than the plan', async () => {
    for (const shape of [
      [1, Tin, C],
      [B + 1, Tin, C],
      [B, Tin - 1, C],
      [B, Tin + 1, C],
      [B, tokens > 0 ? P + plan.K : T, C], // the other side's shape
    ]) {
      const x = fresh(`${op} shape ${shape}`, shape);
      await expectArgError(() => run(x, plan), name, [x], RangeError);
    }
    const x = fresh(`${op} rank`, [B, Tin, C]);
    await expectArgError(() => run({ ...x, shape: [B * Tin, C] }, plan), name, [x]);
  });

  test('NaN or Infinity in the data (image part and prefix)', async () => {
    for (const [index, value] of [
      [(P + 2) * C + 1, NaN],
      [(Tin + P) * C + 3, Infinity],
      [2, -Infinity],
    ]) {
      const x = poisoned(fresh(`${op} nonfinite ${index}`, [B, Tin, C]), index, value);
      await expectArgError(() => run(x, plan), name, [x], RangeError);
    }
    const h = poisoned(fresh(`${op} nonfinite half`, [B, Tin, C], 'float16'), (P + 1) * C, F16.nan);
    await expectArgError(() => run(h, plan), name, [h], RangeError);
  });

  test('dtype and array type mismatch, detached buffer, too-short buffer', async () => {
    const x = fresh(`${op} types`, [B, Tin, C]);
    await expectArgError(() => run({ ...x, dtype: 'float16' }, plan), name, [x], TypeError);
    const h = fresh(`${op} types half`, [B, Tin, C], 'bfloat16');
    await expectArgError(() => run({ ...h, dtype: 'float32' }, plan), name, [h], TypeError);
    await expectArgError(() => run({ ...x, dtype: 'int8' }, plan), /dtype/, [x], TypeError);
    await expectArgError(() => run({ ...x, data: x.data.subarray(1) }, plan), name, [x], RangeError);
    const d = detached(fresh(`${op} detached`, [B, Tin, C]));
    await expectArgError(() => run(d, plan), name, [], TypeError);
  });
});

describe('attention rejects bad input', () => {
  const q0 = () => fresh('att q', [B, 20, C]);
  const k0 = () => fresh('att k', [B, 25, C]);
  const v0 = () => fresh('att v', [B, 25, C]);
  const att = (q: AnyTensor, k: AnyTensor, v: AnyTensor, o: unknown) =>
    toma.attention(q as toma.Tensor, k as toma.Tensor, v as toma.Tensor, o as toma.AttentionOptions);

  test('the valid baseline (Tq != Tk) resolves and leaves q, k, v untouched', async () => {
    const [q, k, v] = [q0(), k0(), v0()];
    const check = guardInputs(q, k, v);
    const out = await att(q, k, v, { heads: 4 });
    expect(out.shape).toEqual([B, 20, C]);
    check();
  });

  test.each([3, 5, 32])('heads %p does not divide C = 16', async (heads) => {
    const [q, k, v] = [q0(), k0(), v0()];
    const e = await expectArgError(() => att(q, k, v, { heads }), /heads/, [q, k, v], RangeError);
    expect(e.message).toMatch(/16/);
  });

  test.each([0, -2, 1.5, NaN, Infinity, undefined, '4'])('heads %p', async (heads) => {
    const [q, k, v] = [q0(), k0(), v0()];
    await expectArgError(() => att(q, k, v, { heads }), /heads/, [q, k, v]);
  });

  test.each([NaN, Infinity, -Infinity, 1e300, Number.MAX_VALUE])('scale %p', async (scale) => {
    const [q, k, v] = [q0(), k0(), v0()];
    await expectArgError(() => att(q, k, v, { heads: 4, scale }), /scale/, [q, k, v], RangeError);
  });

  test('options missing', async () => {
    const [q, k, v] = [q0(), k0(), v0()];
    await expectArgError(() => att(q, k, v, undefined), /options|heads/, [q, k, v], TypeError);
  });

  // A NaN score can vanish in the softmax (the running max and the exp clamps drop NaN) and leave
  // a finite result: q and k are scanned, whatever the output looks like (fuzz seeds 2695, 4272).
  test.each(['q', 'k'])('NaN in %s is rejected even where the output would stay finite', async (which) => {
    for (const index of [0, 4, C + 3, 17 * C + 9]) {
      const [q, k, v] = [q0(), k0(), v0()];
      const bad = poisoned(which === 'q' ? q : k, index, NaN);
      const args = which === 'q' ? [bad, k, v] : [q, bad, v];
      await expectArgError(() => att(args[0], args[1], args[2], { heads: 4 }), new RegExp(`\\b${which}\\b`), args, RangeError);
    }
  });

  test('wrong ranks name the tensor', async () => {
    const [q, k, v] = [q0(), k0(), v0()];
    await expectArgError(() => att({ ...q, shape: [B * 20, C] }, k, v, { heads: 4 }), /\bq(\.shape)?\b/, [q, k, v]);
    await expectArgError(() => att(q, { ...k, shape: [B, 25, C, 1] }, v, { heads: 4 }), /\bk(\.shape)?\b/, [q, k, v]);
    await expectArgError(() => att(q, k, { ...v, shape: [B * 25 * C] }, { heads: 4 }), /\bv(\.shape)?\b/, [q, k, v]);
  });

  test('shape mismatches between q, k and v', async () => {
    const q = q0();
    await expectArgError(() => att(q, fresh('att k B', [1, 25, C]), fresh('att v B', [1, 25, C]), { heads: 4 }), /\bk(\.shape)?\b/, [q], RangeError);
    await expectArgError(() => att(q, fresh('att k C', [B, 25, 8]), fresh('att v C', [B, 25, 8]), { heads: 4 }), /\bk(\.shape)?\b/, [q], RangeError);
    await expectArgError(() => att(q, k0(), fresh('att v T', [B, 24, C]), { heads: 4 }), /\bv(\.shape)?\b/, [q], RangeError);
    await expectArgError(() => att(q, k0(), fresh('att v C2', [B, 25, 8]), { heads: 4 }), /\bv(\.shape)?\b/, [q], RangeError);
  });

  test('dtype mismatch between q, k and v', async () => {
    const q = fresh('att dt q', [B, 20, C], 'float32');
    const k16 = fresh('att dt k', [B, 25, C], 'float16');
    const v16 = fresh('att dt v', [B, 25, C], 'float16');
    const vbf = fresh('att dt vbf', [B, 25, C], 'bfloat16');
    const q16 = fresh('att dt q16', [B, 20, C], 'float16');
    await expectArgError(() => att(q, k16, v16, { heads: 4 }), /\bk(\.dtype)?\b/, [q, k16, v16], TypeError);
    await expectArgError(() => att(q16, k16, vbf, { heads: 4 }), /\bv(\.dtype)?\b/, [q16, k16, vbf], TypeError);
    await expectArgError(() => att(q16, k16, v0(), { heads: 4 }), /\bv(\.dtype)?\b/, [q16, k16], TypeError);
  });

  test('a Float32Array given with dtype float16, in each position', async () => {
    const [q, k, v] = [q0(), k0(), v0()];
    const as16 = (t: toma.Tensor) => ({ ...t, dtype: 'float16' });
    const h = { q: fresh('att f16 q', [B, 20, C], 'float16'), k: fresh('att f16 k', [B, 25, C], 'float16'), v: fresh('att f16 v', [B, 25, C], 'float16') };
    await expectArgError(() => att(as16(q), h.k, h.v, { heads: 4 }), /\bq(\.data|\.dtype)?\b/, [q, h.k, h.v], TypeError);
    await expectArgError(() => att(h.q, as16(k), h.v, { heads: 4 }), /\bk(\.data|\.dtype)?\b/, [k, h.q, h.v], TypeError);
    await expectArgError(() => att(h.q, h.k, as16(v), { heads: 4 }), /\bv(\.data|\.dtype)?\b/, [v, h.q, h.k], TypeError);
  });

  test('NaN or Infinity in q, k or v names the tensor', async () => {
    const [q, k, v] = [q0(), k0(), v0()];
    await expectArgError(() => att(poisoned(q, 17, NaN), k, v, { heads: 4 }), /\bq(\.data)?\b/, [q, k, v], RangeError);
    await expectArgError(() => att(q, poisoned(k, 300, Infinity), v, { heads: 4 }), /\bk(\.data)?\b/, [q, k, v], RangeError);
    await expectArgError(() => att(q, k, poisoned(v, 799, -Infinity), { heads: 4 }), /\bv(\.data)?\b/, [q, k, v], RangeError);
  });

  test('detached and too-short buffers name the tensor', async () => {
    const [q, k, v] = [q0(), k0(), v0()];
    await expectArgError(() => att(q, k, detached(v0()), { heads: 4 }), /\bv(\.data)?\b/, [q, k], TypeError);
    await expectArgError(() => att(detached(q0()), k, v, { heads: 4 }), /\bq(\.data)?\b/, [k, v], TypeError);
    await expectArgError(() => att(q, { ...k, data: k.data.subarray(0, 10) }, v, { heads: 4 }), /\bk(\.data)?\b/, [q, k, v], RangeError);
  });
});

describe('mergeAttentionUnmerge rejects bad input', () => {
  let plan: toma.Plan;
  beforeAll(async () => {
    plan = await toma.computePlan(fresh('mau plan'), OPTS);
  });
  const t3 = (label: string, shape: number[] = [B, T, C], dtype: toma.Dtype = 'float32') => fresh(`mau ${label}`, shape, dtype);
  const mau = (q: AnyTensor, k: AnyTensor, v: AnyTensor, p: unknown, o: unknown) =>
    toma.mergeAttentionUnmerge(q as toma.Tensor, k as toma.Tensor, v as toma.Tensor, p as toma.Plan, o as toma.MergeAttentionOptions);

  test('the valid baseline resolves and leaves q, k, v untouched', async () => {
    const [q, k, v] = [t3('ok q'), t3('ok k'), t3('ok v')];
    const check = guardInputs(q, k, v);
    await mau(q, k, v, plan, { heads: 4 });
    await mau(q, k, v, plan, { heads: 4, mergeQueries: false });
    check();
  });

  test('a fake plan', async () => {
    const [q, k, v] = [t3('fake q'), t3('fake k'), t3('fake v')];
    for (const fake of [{ K: plan.K, destinations: plan.destinations }, Object.create(toma.Plan.prototype), null])
      await expectArgError(() => mau(q, k, v, fake, { heads: 4 }), /plan/, [q, k, v], TypeError);
  });

  test('q, k, v of another shape than the plan', async () => {
    for (const shape of [
      [B, T - 1, C],
      [1, T, C],
      [B, P + plan.K, C],
    ]) {
      const [q, k, v] = [t3(`shape q ${shape}`, shape), t3(`shape k ${shape}`, shape), t3(`shape v ${shape}`, shape)];
      await expectArgError(() => mau(q, k, v, plan, { heads: 4 }), /\bq(\.shape)?\b|plan/, [q, k, v], RangeError);
      await expectArgError(() => mau(q, k, v, plan, { heads: 4, mergeQueries: false }), /\bq(\.shape)?\b|plan/, [q, k, v], RangeError);
    }
  });

  test('k or v of another shape than q', async () => {
    const q = t3('mm q');
    await expectArgError(() => mau(q, t3('mm k', [B, T - 1, C]), t3('mm v', [B, T - 1, C]), plan, { heads: 4 }), /\bk(\.shape)?\b/, [q], RangeError);
    await expectArgError(() => mau(q, t3('mm k2'), t3('mm v2', [B, T, 8]), plan, { heads: 4 }), /\bv(\.shape)?\b/, [q], RangeError);
  });

  test('heads not dividing C, bad mergeQueries, bad scale', async () => {
    const [q, k, v] = [t3('opt q'), t3('opt k'), t3('opt v')];
    await expectArgError(() => mau(q, k, v, plan, { heads: 3 }), /heads/, [q, k, v], RangeError);
    await expectArgError(() => mau(q, k, v, plan, { heads: 0 }), /heads/, [q, k, v], RangeError);
    await expectArgError(() => mau(q, k, v, plan, { heads: 4, mergeQueries: 'no' }), /mergeQueries/, [q, k, v], TypeError);
    await expectArgError(() => mau(q, k, v, plan, { heads: 4, scale: NaN }), /scale/, [q, k, v], RangeError);
  });

  test('dtype mismatch, non-finite data, detached buffer', async () => {
    const q = t3('dt q');
    const k16 = t3('dt k', [B, T, C], 'float16');
    const v = t3('dt v');
    await expectArgError(() => mau(q, k16, v, plan, { heads: 4 }), /\bk(\.dtype)?\b/, [q, k16, v], TypeError);
    await expectArgError(() => mau(q, { ...v, dtype: 'float16' }, t3('dt v16', [B, T, C], 'float16'), plan, { heads: 4 }), /\bk(\.data|\.dtype)?\b/, [q, v], TypeError);
    await expectArgError(() => mau(q, t3('nf k'), poisoned(v, (P + 3) * C, NaN), plan, { heads: 4 }), /\bv(\.data)?\b/, [q, v], RangeError);
    await expectArgError(() => mau(poisoned(q, 5, Infinity), t3('nf k2'), v, plan, { heads: 4, mergeQueries: false }), /\bq(\.data)?\b/, [q, v], RangeError);
    await expectArgError(() => mau(q, detached(t3('det k')), v, plan, { heads: 4 }), /\bk(\.data)?\b/, [q, v], TypeError);
  });
});

describe('the process survives', () => {
  test('after all of the above, a valid call still works', async () => {
    const x = fresh('survive');
    const plan = await toma.computePlan(x, OPTS);
    const y = await toma.merge(x, plan);
    expect(y.shape).toEqual([B, P + plan.K, C]);
  });
});
