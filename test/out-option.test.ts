// options.out of merge, unmerge, attention and mergeAttentionUnmerge: the result is written into
// the caller's tensor (whatever it held before) and that same object is returned; the values are
// those of a call without `out`, and those match the float64 reference in the ops' own tests.
// Wrong dtype, shape or memory shared with an input is an error that names options.out.
import * as toma from '../lib';
import { expectClose, guardInputs, randomTensor, values } from './helpers/data';

const [B, H, W, C, heads] = [2, 8, 8, 48, 3];
const N = H * W;

function garbage(shape: number[], dtype: toma.Dtype): toma.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = dtype === 'float32' ? new Float32Array(n).fill(NaN) : new Uint16Array(n).fill(0x7e00);
  return { data, shape, dtype };
}

describe.each(['float32', 'float16', 'bfloat16'] as toma.Dtype[])('options.out (%s)', (dtype) => {
  const tol = dtype === 'float32' ? 1e-6 : 1e-2;
  let x: toma.Tensor, q: toma.Tensor, k: toma.Tensor, v: toma.Tensor, plan: toma.Plan;
  beforeAll(async () => {
    [x, q, k, v] = ['x', 'q', 'k', 'v'].map((l) => randomTensor(`out ${l} ${dtype}`, [B, N, C], dtype).t);
    plan = await toma.computePlan(x, { grid: [H, W], ratio: 0.5 });
  });

  test('merge and unmerge write into out, return it, and equal a fresh result', async () => {
    const fresh = await toma.merge(q, plan);
    const out = garbage(fresh.shape, dtype);
    const check = guardInputs(q);
    const got = await toma.merge(q, plan, { out });
    check();
    expect(got).toBe(out);
    expectClose(values(out), values(fresh), tol, 'merge');
    const back = garbage([B, N, C], dtype);
    const freshBack = await toma.unmerge(fresh, plan);
    expect(await toma.unmerge(fresh, plan, { out: back })).toBe(back);
    expectClose(values(back), values(freshBack), tol, 'unmerge');
  });

  test('attention and mergeAttentionUnmerge write into out, twice in a row, and equal a fresh result', async () => {
    const out = garbage([B, N, C], dtype);
    const check = guardInputs(q, k, v);
    for (let i = 0; i < 2; i++) {
      expect(await toma.attention(q, k, v, { heads, out })).toBe(out);
      expectClose(values(out), values(await toma.attention(q, k, v, { heads })), tol, 'attention');
      expect(await toma.mergeAttentionUnmerge(q, k, v, plan, { heads, out })).toBe(out);
      expectClose(values(out), values(await toma.mergeAttentionUnmerge(q, k, v, plan, { heads })), tol, 'mergeAttentionUnmerge');
    }
    check();
  });
});

describe('options.out errors', () => {
  let q: toma.Tensor, k: toma.Tensor, v: toma.Tensor, plan: toma.Plan;
  beforeAll(async () => {
    [q, k, v] = ['q', 'k', 'v'].map((l) => randomTensor(`out err ${l}`, [B, N, C]).t);
    plan = await toma.computePlan(q, { grid: [H, W], ratio: 0.5 });
  });

  test('wrong dtype: TypeError; wrong shape: RangeError; not a tensor: TypeError', async () => {
    const half = garbage([B, N, C], 'float16');
    await expect(toma.attention(q, k, v, { heads, out: half })).rejects.toThrow(TypeError);
    await expect(toma.attention(q, k, v, { heads, out: half })).rejects.toThrow(/options\.out\.dtype 'float16' must be the result's dtype 'float32'/);
    await expect(toma.merge(q, plan, { out: garbage([B, N, C], 'float32') })).rejects.toThrow(RangeError);
    await expect(toma.merge(q, plan, { out: garbage([B, N, C], 'float32') })).rejects.toThrow(
      new RegExp(`options\\.out\\.shape \\[2, ${N}, ${C}\\] must be the result's shape \\[2, ${plan.K}, ${C}\\]`),
    );
    await expect(toma.unmerge(garbage([B, plan.K, C], 'float32'), plan, { out: new Float32Array(B * N * C) as never })).rejects.toThrow(
      /options\.out must be a tensor/,
    );
  });

  test('memory shared with an input: RangeError, and the input is left as it was', async () => {
    const before = Float32Array.from(q.data as Float32Array);
    await expect(toma.attention(q, k, v, { heads, out: q })).rejects.toThrow(/options\.out shares memory with q/);
    // A view into v's buffer, offset by one row: overlapping, not identical.
    const buf = new Float32Array(B * N * C + C);
    const vv: toma.Tensor = { data: buf.subarray(0, B * N * C), shape: [B, N, C], dtype: 'float32' };
    const ov: toma.Tensor = { data: buf.subarray(C), shape: [B, N, C], dtype: 'float32' };
    await expect(toma.mergeAttentionUnmerge(q, k, vv, plan, { heads, out: ov })).rejects.toThrow(RangeError);
    await expect(toma.mergeAttentionUnmerge(q, k, vv, plan, { heads, out: ov })).rejects.toThrow(/shares memory with v/);
    expect(Array.from(q.data as Float32Array)).toEqual(Array.from(before));
  });
});

test('options.out on a resizable ArrayBuffer: TypeError before anything runs', async () => {
  const q = randomTensor('out resizable q', [B, N, C]).t;
  const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer;
  let buf: ArrayBuffer;
  try {
    buf = new Resizable(B * N * C * 4, { maxByteLength: 2 * B * N * C * 4 });
  } catch {
    return; // a runtime without resizable buffers cannot be given one
  }
  if ((buf as ArrayBuffer & { resizable?: boolean }).resizable !== true) return;
  const out: toma.Tensor = { data: new Float32Array(buf), shape: [B, N, C], dtype: 'float32' };
  await expect(toma.attention(q, q, q, { heads, out })).rejects.toThrow(/options\.out\.data must not be backed by a resizable ArrayBuffer/);
});
