// Small helpers to build and read tensors; conversions to and from half types for callers that
// hold float32 data (the ops themselves convert natively and never per element in JavaScript).
import type { Dtype, Tensor } from './types';

export function tensor(data: Float32Array | Uint16Array, shape: number[], dtype?: Dtype): Tensor {
  return { data, shape, dtype: dtype ?? (data instanceof Float32Array ? 'float32' : 'float16') };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function f32ToF16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) return sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0);
  if (ax >= 0x477ff000) return sign | 0x7c00;
  if (ax < 0x38800000) {
    // Subnormal or zero: the half mantissa is |v| * 2^24 rounded half to even (exact in float64).
    const y = Math.abs(f32[0]) * 16777216;
    const fl = Math.floor(y);
    const d = y - fl;
    return sign | (d > 0.5 || (d === 0.5 && fl % 2 === 1) ? fl + 1 : fl);
  }
  const rounded = ax + 0x0fff + ((ax >>> 13) & 1);
  return sign | ((rounded - 0x38000000) >>> 13);
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function f32ToBf16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}


/** Converts float32 data to a tensor of the given dtype (round to nearest even). */
export function fromFloat32(data: Float32Array, shape: number[], dtype: Dtype = 'float32'): Tensor {
  if (dtype === 'float32') return { data, shape, dtype };
  const out = new Uint16Array(data.length);
  const conv = dtype === 'float16' ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  return { data: out, shape, dtype };
}

/** Every float16 bit pattern's value (256 KiB, built on first use): conversion by lookup. */
let halfTable: Float32Array | undefined;
function halfValues(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = f16ToF32(h);
  }
  return halfTable;
}

/** The tensor's values as float32. */
export function toFloat32(t: Tensor): Float32Array {
  if (t.dtype === 'float32') return t.data as Float32Array;
  const src = t.data as Uint16Array;
  const out = new Float32Array(src.length);
  if (t.dtype === 'float16') {
    const table = halfValues();
    for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
    return out;
  }
  // bfloat16 is the high half of a float32
  new Uint32Array(out.buffer).set(src);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) bits[i] <<= 16;
  return out;
}
