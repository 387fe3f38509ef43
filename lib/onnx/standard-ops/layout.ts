// The constant index tensors that let a fixed ONNX graph express SPEC sections 2-3 for any H x W:
// the image tokens are gathered into a padded [R, nmax] region layout (remainder tiles padded with
// a repeat of their first token and masked out), and each region keeps kmax destination slots, of
// which the first k_r are real (SPEC 3's count per region). Pure TypeScript, no ONNX here.
import type { Region } from '../../types';

export interface RegionLayout {
  H: number;
  W: number;
  N: number;
  region: Region;
  ratio: number;
  /** Number of regions. */
  R: number;
  /** Largest region size (the padded region length). */
  nmax: number;
  /** Largest destination count of a region (the padded slot count). */
  T: number;
  /** Tokens of each region, ascending. */
  sizes: number[];
  /** Destinations per region (SPEC 3). */
  counts: number[];
  /** Sum of counts: merged tokens per batch element. */
  K: number;
  /** [R * nmax]: the token at padded position r * nmax + i (padding repeats the region's first token). */
  perm: number[];
  /** [R * nmax]: 1 for a real token, 0 for padding. */
  srcValid: number[];
  /** [N]: padded position of every token. */
  inv: number[];
  /** [R * T]: 1 for a real destination slot (s < k_r). */
  slotValid: number[];
  /** [K]: padded slot r * T + s of every merged token, region order. */
  validSlots: number[];
  /** [R * T]: merged index of every padded slot (0 for unused slots, which carry zero weight). */
  slotToK: number[];
  /** The gather by perm is the identity (no padding, tokens already in region order). */
  permIdentity: boolean;
  /** Every region has T slots in use: no slot gather needed. */
  slotsIdentity: boolean;
  /** No region is padded. */
  unpadded: boolean;
}

/** SPEC 3: k = clamp(floor((1 - ratio) * n + 0.5), 1, n), in float64 like the native code. */
export function destinationCount(n: number, ratio: number): number {
  const k = Math.floor((1 - ratio) * n + 0.5);
  return Math.min(n, Math.max(1, k));
}

/** SPEC 2: regions in row-major order, tokens ascending inside each. */
export function regionTokens(H: number, W: number, region: Region): number[][] {
  const out: number[][] = [];
  const rect = (r0: number, r1: number, c0: number, c1: number) => {
    const t: number[] = [];
    for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) t.push(r * W + c);
    out.push(t);
  };
  if (region.kind === 'tile') {
    const th = Math.min(region.th, H);
    const tw = Math.min(region.tw, W);
    for (let r0 = 0; r0 < H; r0 += th) for (let c0 = 0; c0 < W; c0 += tw) rect(r0, Math.min(H, r0 + th), c0, Math.min(W, c0 + tw));
  } else if (region.kind === 'stripe') {
    const rows = Math.min(region.rows, H);
    for (let r0 = 0; r0 < H; r0 += rows) rect(r0, Math.min(H, r0 + rows), 0, W);
  } else {
    rect(0, H, 0, W);
  }
  return out;
}

export function checkGrid(grid: unknown, what = 'grid'): [number, number] {
  if (!Array.isArray(grid) || grid.length !== 2 || !grid.every((d) => Number.isInteger(d) && d >= 1))
    throw new RangeError(`${what} must be [H, W] with integers >= 1, got ${JSON.stringify(grid)}`);
  return [grid[0], grid[1]];
}

export function regionLayout(grid: [number, number], region: Region, ratio: number): RegionLayout {
  const [H, W] = checkGrid(grid);
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0 || ratio >= 1)
    throw new RangeError(`ratio must be a finite number in [0, 1), got ${String(ratio)} (it is never clamped)`);
  const N = H * W;
  const regions = regionTokens(H, W, region);
  const R = regions.length;
  const sizes = regions.map((t) => t.length);
  const nmax = Math.max(...sizes);
  const counts = sizes.map((n) => destinationCount(n, ratio));
  const T = Math.max(...counts);
  const K = counts.reduce((a, b) => a + b, 0);
  const perm: number[] = new Array(R * nmax);
  const srcValid: number[] = new Array(R * nmax);
  const inv: number[] = new Array(N);
  regions.forEach((toks, r) => {
    for (let i = 0; i < nmax; i++) {
      const real = i < toks.length;
      perm[r * nmax + i] = real ? toks[i] : toks[0];
      srcValid[r * nmax + i] = real ? 1 : 0;
      if (real) inv[toks[i]] = r * nmax + i;
    }
  });
  const slotValid: number[] = new Array(R * T).fill(0);
  const slotToK: number[] = new Array(R * T).fill(0);
  const validSlots: number[] = [];
  counts.forEach((k, r) => {
    for (let s = 0; s < k; s++) {
      slotValid[r * T + s] = 1;
      slotToK[r * T + s] = validSlots.length;
      validSlots.push(r * T + s);
    }
  });
  const unpadded = sizes.every((n) => n === nmax);
  return {
    H,
    W,
    N,
    region,
    ratio,
    R,
    nmax,
    T,
    sizes,
    counts,
    K,
    perm,
    srcValid,
    inv,
    slotValid,
    validSlots,
    slotToK,
    permIdentity: unpadded && perm.every((t, i) => t === i),
    slotsIdentity: counts.every((k) => k === T),
    unpadded,
  };
}
