// The public types of SPEC section 8.

export type Dtype = 'float32' | 'float16' | 'bfloat16';

/** A row-major [B, T, C] tensor. Half types travel as Uint16Array bit patterns. */
export interface Tensor {
  data: Float32Array | Uint16Array;
  shape: number[];
  dtype: Dtype;
}

export type Region =
  | { kind: 'tile'; th: number; tw: number }
  | { kind: 'stripe'; rows: number }
  | { kind: 'global' };

export type BackendName = 'cpu' | 'cuda';

export interface BackendOption {
  /** Force a backend for this call; default: toma.backend().name. */
  backend?: BackendName;
}

export interface PlanOptions extends BackendOption {
  /** [H, W]: the image tokens form an H x W grid, N = H * W. */
  grid: [number, number];
  /** Fraction of image tokens removed, in [0, 1). Never clamped. Unused with `similarity`. */
  ratio: number;
  /**
   * Adaptive mode: per region, keep the fewest destinations whose facility-location coverage
   * f(S) / f(V) reaches this value in (0, 1] (flat regions merge more, detailed ones less).
   * The count per region is the same for every batch element (the largest any one needs).
   */
  similarity?: number;
  /** Default { kind: 'tile', th: 4, tw: 4 }. */
  region?: Region;
  /** Softmax temperature of the merge weights; default 1000; Infinity = hard plan. */
  tau?: number;
  /** Tokens in front of the image tokens that are never merged (Flux text); default 0. */
  prefix?: number;
  /** Select on batch element 0 and use its destinations for all; default false. */
  shareBatch?: boolean;
  /**
   * Keep these destinations ([K] shared, or [B, K] flat, as plan.destinations) and only
   * recompute the weights: the scheduler's weight-only refresh.
   */
  destinations?: Int32Array;
}

export interface OutOption {
  /**
   * CPU backend: write the result into this host tensor instead of a new one, so a loop over
   * blocks or steps allocates no output. Its dtype and shape must be the result's and its memory
   * must overlap no input; the op resolves to this same object. Its contents are undefined if
   * the op rejects. On CUDA: a TypeError.
   */
  out?: Tensor;
}

/** Options of merge and unmerge. */
export interface RowsOptions extends BackendOption, OutOption {}

export interface AttentionOptions extends BackendOption, OutOption {
  heads: number;
  /** Default 1 / sqrt(C / heads). */
  scale?: number;
}

export interface MergeAttentionOptions extends AttentionOptions {
  /** false: ToDo-style, merge only k and v, keep every query, no unmerge. Default true. */
  mergeQueries?: boolean;
  /**
   * Proportional attention (as in ToMe): a merged key's score gets + log(mass), the number of
   * tokens it stands for, so attention over merged keys approximates attention over all keys.
   * Not in the paper; default false (SPEC section 6's plain attention over the merged tokens).
   */
  proportional?: boolean;
}

export interface BackendInfo {
  name: BackendName;
  device?: string;
  cudaCompiled: boolean;
  reason?: string;
}

/** One region of a plan, dense, for inspection and tests. M is [k, n], U is [n, k], row-major. */
export interface RegionMatrices {
  tokens: Int32Array;
  destinations: Int32Array;
  M: Float32Array;
  U: Float32Array;
}
