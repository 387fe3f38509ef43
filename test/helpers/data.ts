// Tensors for the tests and the comparisons against the float64 reference (SPEC section 9).
import * as toma from '../../lib';
import { gaussian, seedOf } from './rng';

export type Dtype = toma.Dtype;
export const DTYPES: Dtype[] = ['float32', 'float16', 'bfloat16'];

export interface RandomTensor {
  /** What the op receives. */
  t: toma.Tensor;
  /** The exact values the tensor holds (half values widened), for the reference. */
  x: Float64Array;
}

/**
 * A fresh Gaussian [B, T, C] tensor of the given dtype. The label picks the seed: every case gets
 * its own data. Half tensors hold the float32 Gaussians rounded to nearest even; `x` holds exactly
 * those rounded values, so op and reference see the same input.
 */
export function randomTensor(label: string, shape: number[], dtype: Dtype = 'float32', std = 1, mean = 0): RandomTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = gaussian(n, seedOf(label), std, mean);
  const t = toma.fromFloat32(f, shape.slice(), dtype);
  return { t, x: Float64Array.from(toma.toFloat32(t)) };
}

/** The values of an op's output, widened to float64. */
export function values(t: toma.Tensor): Float64Array {
  return Float64Array.from(toma.toFloat32(t));
}

/** ||out - ref|| / ||ref||; NaN if any entry of out is not finite (so it never passes a bound). */
export function relErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`relErr: length ${out.length} vs reference ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const o = out[i];
    if (!Number.isFinite(o)) return NaN;
    const d = o - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

/** SPEC section 9: the bound on ||out - ref|| / ||ref|| for a dtype and a kind of op. */
export function tolerance(dtype: Dtype, kind: 'linear' | 'attention'): number {
  if (dtype === 'float16') return 2e-3;
  if (dtype === 'bfloat16') return 1e-2;
  return kind === 'linear' ? 1e-5 : 1e-4;
}

/** Asserts every entry is finite and the relative error is within tol. */
export function expectClose(out: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what = 'output'): number {
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(ref[i])) throw new Error(`${what}: the reference itself is not finite at ${i}`);
  }
  let bad = -1;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) {
      bad = i;
      break;
    }
  }
  if (bad >= 0) throw new Error(`${what}: entry ${bad} is ${out[bad]} (not finite)`);
  const e = relErr(out, ref);
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e.toExponential(3)} exceeds ${tol.toExponential(1)}`);
  // TOMA_TEST_ERRORS=1 prints every measured error against its bound (to see the margins).
  if (process.env.TOMA_TEST_ERRORS) process.stdout.write(`relerr ${e.toExponential(2)} tol ${tol.toExponential(0)} ${what}\n`);
  return e;
}

/** Asserts the output tensor has the expected shape, dtype and array type. */
export function expectTensor(t: toma.Tensor, shape: number[], dtype: Dtype): void {
  expect(t.shape).toEqual(shape);
  expect(t.dtype).toBe(dtype);
  expect(t.data.length).toBe(shape.reduce((a, b) => a * b, 1));
  if (dtype === 'float32') expect(t.data).toBeInstanceOf(Float32Array);
  else expect(t.data).toBeInstanceOf(Uint16Array);
}

/**
 * Takes byte copies of the given tensors' data; the returned function asserts that nothing was
 * written into them since (SPEC section 8: nothing is written into the caller's input arrays).
 */
export function guardInputs(...ts: Array<toma.Tensor | { data: ArrayBufferView } | undefined>): () => void {
  const saved = ts.map((t) => {
    if (!t || !ArrayBuffer.isView(t.data) || t.data.buffer.byteLength === 0) return undefined;
    const d = t.data;
    return { d, copy: new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice() };
  });
  return () => {
    for (const s of saved) {
      if (!s) continue;
      const now = new Uint8Array(s.d.buffer, s.d.byteOffset, s.d.byteLength);
      expect(Buffer.compare(Buffer.from(now), Buffer.from(s.copy))).toBe(0);
    }
  };
}
