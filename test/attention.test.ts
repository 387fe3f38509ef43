// attention (SPEC section 6's building block): exact softmax attention per head against the
// float64 reference; blocking-sized cases (the CPU kernel blocks by 96 queries and 256 keys, so
// sizes here are not multiples of either), Tq != Tk, the scale option, large logits.
import * as toma from '../lib';
import { expectClose, expectTensor, guardInputs, randomTensor, tolerance, values, type Dtype } from './helpers/data';
import { ops } from './reference';

interface AttCase {
  B: number;
  Tq: number;
  Tk: number;
  C: number;
  heads: number;
  dtype: Dtype;
  scale?: number;
  std?: number;
}

const CASES: AttCase[] = [
  { B: 1, Tq: 13, Tk: 13, C: 8, heads: 2, dtype: 'float32' },
  { B: 2, Tq: 42, Tk: 42, C: 16, heads: 4, dtype: 'float32' },
  { B: 2, Tq: 35, Tk: 19, C: 24, heads: 3, dtype: 'float32' },
  { B: 1, Tq: 7, Tk: 61, C: 32, heads: 1, dtype: 'float32' },
  { B: 2, Tq: 29, Tk: 29, C: 8, heads: 8, dtype: 'float32' },
  { B: 1, Tq: 1, Tk: 1, C: 16, heads: 2, dtype: 'float32' },
  { B: 1, Tq: 50, Tk: 50, C: 16, heads: 2, dtype: 'float32', scale: 0.37 },
  { B: 2, Tq: 33, Tk: 47, C: 32, heads: 4, dtype: 'float16' },
  { B: 1, Tq: 60, Tk: 60, C: 64, heads: 4, dtype: 'float16', scale: 0.2 },
  { B: 2, Tq: 33, Tk: 47, C: 32, heads: 4, dtype: 'bfloat16' },
  { B: 1, Tq: 45, Tk: 20, C: 16, heads: 2, dtype: 'bfloat16' },
  { B: 1, Tq: 40, Tk: 40, C: 16, heads: 2, dtype: 'float32', std: 4 },
  // Blocking: 300 = 3 * 96 + 12 queries and 256 + 44 keys; 530 = 2 * 256 + 18 keys.
  { B: 1, Tq: 300, Tk: 300, C: 128, heads: 4, dtype: 'float32' },
  { B: 1, Tq: 197, Tk: 530, C: 64, heads: 2, dtype: 'float32' },
  { B: 2, Tq: 97, Tk: 257, C: 32, heads: 2, dtype: 'float16' },
];

const name = (c: AttCase) =>
  `${c.dtype} B${c.B} Tq${c.Tq} Tk${c.Tk} C${c.C} heads${c.heads}${c.scale ? ` scale${c.scale}` : ''}${c.std ? ` std${c.std}` : ''}`;

describe('attention matches the reference', () => {
  test.each(CASES.map((c) => [name(c), c] as const))('%s', async (label, c) => {
    const q = randomTensor(`att q ${label}`, [c.B, c.Tq, c.C], c.dtype, c.std ?? 1);
    const k = randomTensor(`att k ${label}`, [c.B, c.Tk, c.C], c.dtype, c.std ?? 1);
    const v = randomTensor(`att v ${label}`, [c.B, c.Tk, c.C], c.dtype);
    const check = guardInputs(q.t, k.t, v.t);
    const o: toma.AttentionOptions = { heads: c.heads };
    if (c.scale !== undefined) o.scale = c.scale;
    const out = await toma.attention(q.t, k.t, v.t, o);
    check();
    expectTensor(out, [c.B, c.Tq, c.C], c.dtype);
    const ref = ops.attention(q.x, k.x, v.x, c.B, c.Tq, c.Tk, c.C, c.heads, c.scale);
    expectClose(values(out), ref, tolerance(c.dtype, 'attention'), label);
  });
});

describe('attention properties', () => {
  test('the default scale is 1 / sqrt(C / heads)', async () => {
    const [B, T, C, heads] = [1, 21, 32, 4];
    const q = randomTensor('att scale q', [B, T, C]);
    const k = randomTensor('att scale k', [B, T, C]);
    const v = randomTensor('att scale v', [B, T, C]);
    const a = values(await toma.attention(q.t, k.t, v.t, { heads }));
    const b = values(await toma.attention(q.t, k.t, v.t, { heads, scale: 1 / Math.sqrt(C / heads) }));
    expectClose(a, b, 1e-6, 'default scale');
    const c = values(await toma.attention(q.t, k.t, v.t, { heads, scale: 1 / Math.sqrt(C) }));
    expect(Math.max(...a.map((x, i) => Math.abs(x - c[i])))).toBeGreaterThan(1e-3);
  });

  test('heads are independent: each head sees only its channels', async () => {
    const [B, T, C, heads] = [1, 17, 16, 2];
    const q = randomTensor('att heads q', [B, T, C]);
    const k = randomTensor('att heads k', [B, T, C]);
    const v = randomTensor('att heads v', [B, T, C]);
    const full = values(await toma.attention(q.t, k.t, v.t, { heads }));
    const d = C / heads;
    for (let h = 0; h < heads; h++) {
      const pick = (x: Float64Array) => {
        const out = new Float32Array(B * T * d);
        for (let t = 0; t < B * T; t++) for (let c = 0; c < d; c++) out[t * d + c] = x[t * C + h * d + c];
        return { data: out, shape: [B, T, d], dtype: 'float32' as const };
      };
      const one = values(await toma.attention(pick(q.x), pick(k.x), pick(v.x), { heads: 1, scale: 1 / Math.sqrt(d) }));
      const mine = new Float64Array(B * T * d);
      for (let t = 0; t < B * T; t++) for (let c = 0; c < d; c++) mine[t * d + c] = full[t * C + h * d + c];
      expectClose(mine, one, 1e-6, `head ${h}`);
    }
  });

  test('large logits stay finite (numerically stable softmax)', async () => {
    const [B, T, C, heads] = [1, 40, 16, 1];
    const q = randomTensor('att large q', [B, T, C], 'float32', 30);
    const k = randomTensor('att large k', [B, T, C], 'float32', 30);
    const v = randomTensor('att large v', [B, T, C]);
    const out = values(await toma.attention(q.t, k.t, v.t, { heads }));
    expect(out.every(Number.isFinite)).toBe(true);
    const ref = ops.attention(q.x, k.x, v.x, B, T, T, C, heads);
    // Logits reach several hundred; the SPEC 9 float32 bound still holds.
    expectClose(out, ref, tolerance('float32', 'attention'), 'large logits');
  });
});
