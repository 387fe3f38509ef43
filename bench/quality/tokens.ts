// Token fields from photographs: a stand-in for the hidden states of a diffusion transformer's
// 64x64 attention blocks (SDXL at 1024x1024, SPEC 10). Patch embedding as in a ViT/DiT stem:
// the image is cut into non-overlapping patch x patch pixel patches, each flattened (RGB, scaled
// to [-1, 1]), projected by a fixed seeded Gaussian matrix to C channels and layer-normalised per
// token. q, k and v come from three more fixed seeded C x C projections of those tokens.
import type { Rgb } from './photos';

/** Seeded Gaussian matrix [rows, cols] with standard deviation 1 / sqrt(rows) (fan-in). */
export function projection(rows: number, cols: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const std = 1 / Math.sqrt(rows);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const th = 2 * Math.PI * uniform();
    out[i] = std * r * Math.cos(th);
    if (i + 1 < out.length) out[i + 1] = std * r * Math.sin(th);
  }
  return out;
}

/** [n, k] x [k, m] -> [n, m], float32 storage, float32 accumulation in an i-k-j loop. */
export function matmul(a: Float32Array, b: Float32Array, n: number, k: number, m: number): Float32Array {
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    const o = i * m;
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      if (av === 0) continue;
      const bo = p * m;
      for (let j = 0; j < m; j++) out[o + j] += av * b[bo + j];
    }
  }
  return out;
}

/** LayerNorm over the channels of each token (no affine), eps 1e-5, in place. */
export function layerNorm(x: Float32Array, n: number, C: number): Float32Array {
  for (let i = 0; i < n; i++) {
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[i * C + c];
    mean /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[i * C + c] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / C + 1e-5);
    for (let c = 0; c < C; c++) x[i * C + c] = (x[i * C + c] - mean) * inv;
  }
  return x;
}

export interface TokenField {
  /** [H * W, C] token field (the block input: plans select on it). */
  x: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  H: number;
  W: number;
  C: number;
}

export interface EmbedOptions {
  patch: number;
  C: number;
  seed: number;
}

/** Patch-embeds a square image into an (size / patch)^2 token field with q, k, v. */
export function tokenField(img: Rgb, o: EmbedOptions): TokenField {
  if (img.width !== img.height || img.width % o.patch) throw new RangeError('tokenField: a square image, a multiple of the patch size');
  const H = img.height / o.patch;
  const W = img.width / o.patch;
  const N = H * W;
  const D = o.patch * o.patch * 3;
  const patches = new Float32Array(N * D);
  for (let r = 0; r < H; r++)
    for (let c = 0; c < W; c++)
      for (let y = 0; y < o.patch; y++)
        for (let x = 0; x < o.patch; x++)
          for (let ch = 0; ch < 3; ch++)
            patches[(r * W + c) * D + (y * o.patch + x) * 3 + ch] =
              2 * img.data[((r * o.patch + y) * img.width + c * o.patch + x) * 3 + ch] - 1;
  const x = layerNorm(matmul(patches, projection(D, o.C, o.seed), N, D, o.C), N, o.C);
  const q = matmul(x, projection(o.C, o.C, o.seed + 1), N, o.C, o.C);
  const k = matmul(x, projection(o.C, o.C, o.seed + 2), N, o.C, o.C);
  const v = matmul(x, projection(o.C, o.C, o.seed + 3), N, o.C, o.C);
  return { x, q, k, v, H, W, C: o.C };
}
