// Whether merging a block can pay, by default: toma must not make a model slower. Merging saves
// the attention work over the tokens it removes, (T^2 - T'^2) x 4 x C flops per image with T' the
// merged sequence; it costs a plan (amortised over the reuse schedule), the merge and unmerge, and
// in segment mode a cut: the graph stops, q/k/v/x and the output cross into JavaScript and back,
// and one more onnxruntime run starts. The first grows with T^2, the rest with T, plus a fixed
// part per block, so small blocks (few tokens, few channels) stay dense.
//
// The rates are this project's measurements on 2-core x86-64 build machines (npm run bench:models,
// bench/results/models-*.json): they set where the line falls, and only their ratios matter, as
// both sides run on the same CPU.
import type { PatchMode } from './session-types';

export interface BlockCost {
  /** Batch (1 when the graph does not tell). */
  batch: number;
  /** Image tokens, and text tokens beside them (never merged). */
  image: number;
  text: number;
  channels: number;
  heads: number;
  /** Fraction of image tokens removed. */
  ratio: number;
  /** The attention as exported: MatMul-Softmax-MatMul materialises the scores; a fused node does not. */
  fused: boolean;
}

export interface Payoff {
  pays: boolean;
  /** Estimated time saved and spent per run, in milliseconds. */
  savedMs: number;
  costMs: number;
  reason: string;
}

/** Attention flops per second: onnxruntime's MatMul-Softmax-MatMul and fused MHA; toma's kernel. */
const ORT_UNFUSED_FLOPS = 40e9;
const ORT_FUSED_FLOPS = 120e9;
const TOMA_FLOPS = 120e9;
/** Scores written and read back by the unfused form: bytes per score at memory bandwidth. */
const SCORE_BYTES = 12;
const MEMORY_BYTES_PER_S = 8e9;
/** Plan (selection + weights, amortised 1 in 5 steps), merge and unmerge: seconds per token-channel. */
const TOKEN_CHANNEL_S = 4e-10;
/** A cut (segments): tensors through JavaScript (5 token tensors in, 1 out) and a fixed part. */
const CUT_BYTES_PER_TOKEN_CHANNEL = 6 * 4 * 2;
const CUT_FIXED_S = 0.4e-3;
/** standard-ops: the plan and merge run as ONNX ops, a few dozen small nodes per block. */
const GRAPH_FIXED_S = 0.3e-3;
/** Merge only where the estimate saves this much more than it costs. */
const MARGIN = 1.25;

function attentionSeconds(batch: number, tokens: number, channels: number, heads: number, fused: boolean, rate: number): number {
  const flops = 4 * batch * tokens * tokens * channels;
  const scores = batch * heads * tokens * tokens;
  return flops / rate + (fused ? 0 : (scores * SCORE_BYTES) / MEMORY_BYTES_PER_S);
}

export function mergedTokens(image: number, ratio: number): number {
  return Math.max(1, Math.floor((1 - ratio) * image + 0.5));
}

/** The estimate for one block in one patch mode. */
export function payoff(c: BlockCost, mode: PatchMode): Payoff {
  const T = c.image + c.text;
  const Tm = mergedTokens(c.image, c.ratio) + c.text;
  const dense = attentionSeconds(c.batch, T, c.channels, c.heads, c.fused, c.fused ? ORT_FUSED_FLOPS : ORT_UNFUSED_FLOPS);
  const merged = attentionSeconds(c.batch, Tm, c.channels, c.heads, true, mode === 'segments' ? TOMA_FLOPS : c.fused ? ORT_FUSED_FLOPS : ORT_UNFUSED_FLOPS);
  const tokenChannels = c.batch * T * c.channels;
  const overhead =
    tokenChannels * TOKEN_CHANNEL_S +
    (mode === 'segments' ? CUT_FIXED_S + (tokenChannels * CUT_BYTES_PER_TOKEN_CHANNEL) / MEMORY_BYTES_PER_S : GRAPH_FIXED_S);
  const saved = dense - merged;
  const pays = saved > MARGIN * overhead;
  const ms = (x: number) => (x * 1e3).toFixed(x < 1e-3 ? 3 : 1);
  const reason = pays
    ? `merging saves about ${ms(saved)} ms of attention for ${ms(overhead)} ms of plan, merge and ${mode === 'segments' ? 'cut' : 'graph'} work`
    : `dense by default: ${c.image} image tokens x ${c.channels} channels is too little attention for merging to pay ` +
      `(it would save about ${ms(Math.max(0, saved))} ms and cost ${ms(overhead)} ms per run); pass dense: [] to merge it anyway`;
  return { pays, savedMs: saved * 1e3, costMs: overhead * 1e3, reason };
}

/** What the default policy needs to know of a block. */
export interface PolicyBlock {
  name: string;
  kind: 'self' | 'cross' | 'joint';
  grid?: [number, number];
  /** Batch dim of the block's tokens (a number when known). */
  batch?: number | string;
  text: number;
  channels: number;
  heads: number;
  fused: boolean;
}

/**
 * The default for options.dense in ONNX sessions: blocks where merging cannot pay stay dense, each
 * with its reason. `ratioOf` gives a block's ratio (adaptive ratios are taken at 0.5).
 */
export function defaultDense(blocks: PolicyBlock[], ratioOf: (block: string) => number, mode: PatchMode): Map<string, string> {
  const dense = new Map<string, string>();
  for (const b of blocks) {
    if (b.kind === 'cross' || !b.grid) continue;
    const ratio = ratioOf(b.name);
    if (!(ratio > 0)) continue;
    const p = payoff(
      {
        batch: typeof b.batch === 'number' && b.batch > 0 ? b.batch : 1,
        image: b.grid[0] * b.grid[1],
        text: b.text,
        channels: b.channels,
        heads: b.heads,
        ratio,
        fused: b.fused,
      },
      mode,
    );
    if (!p.pays) dense.set(b.name, p.reason);
  }
  return dense;
}

/** A block's ratio for the policy: a number, a per-block function's value, or 0.5 for { similarity }. */
export function ratioFor(ratio: unknown, block: string): number {
  if (typeof ratio === 'number') return ratio;
  if (typeof ratio === 'function') {
    const r = (ratio as (b: string) => unknown)(block);
    return typeof r === 'number' ? r : 0.5;
  }
  return 0.5;
}
