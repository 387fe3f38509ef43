// Whether merging a block can pay, and in which mode: by default toma must not make a model
// slower. Merging saves the attention over the tokens it removes; it costs a plan (amortised over
// the reuse schedule), the merge and unmerge, and in segment mode a cut: the graph stops, q/k/v/x
// and the output cross into JavaScript and back, toma's kernel is called (a fixed cost per call),
// and one more onnxruntime run starts. The saving grows with the square of the tokens, the costs
// with the tokens plus a fixed part, so small blocks (few tokens, small heads) stay dense.
//
// The rates come from bench/attention-calibration.bench.ts on this project's 2-core x86-64 build
// machines (bench/results/attention-calibration-*.json): onnxruntime's unfused attention core (the
// form exporters write) costs about 0.55 + 0.011 d ns per score (d = head size), toma's
// mergeAttentionUnmerge about 0.35 ms per call plus 0.5 + 0.03 min(d, 64) ns per merged score.
// Only their ratios matter (both run on the same CPU); the fixed costs shift the line a little
// from machine to machine. At 4096 tokens onnxruntime's unfused core gets far slower than this
// (it writes a score matrix of hundreds of MB); the estimate leaves that out, which only makes it
// more cautious where merging already pays most.
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
  /** The attention as exported: MatMul-Softmax-MatMul writes its scores; a fused node does not. */
  fused: boolean;
  /** Rotary embedding: segment mode rotates merged tokens in JavaScript between native calls. */
  rope?: boolean;
}

export interface Payoff {
  pays: boolean;
  /** Estimated time saved and spent per run, in milliseconds. */
  savedMs: number;
  costMs: number;
  reason: string;
}

const NS = 1e-9;
/** onnxruntime's unfused core, per score (the scores are written and read back). */
const ortScore = (d: number) => (0.55 + 0.011 * d) * NS;
/** A fused core (com.microsoft attention, or toma's own kernel), per score. */
const fusedScore = (d: number) => (0.5 + 0.03 * Math.min(d, 64)) * NS;
/** toma's fixed cost per native call (thread pool, result memory). */
const TOMA_CALL_S = 0.35e-3;
/** Plan: selection and weights, once every 5 steps by the default schedule. */
const PLAN_S = (tokenChannels: number) => (0.2e-3 + tokenChannels * 2 * NS) / 5;
/** segments: a cut (pieces stop and start, tensors cross as copies). */
const CUT_S = (tokenChannels: number) => 0.4e-3 + (tokenChannels * 48) / 8e9;
/** segments: RoPE blocks rotate merged tokens in JavaScript and make three native calls, not one. */
const ROPE_S = (tokenChannels: number) => 2 * TOMA_CALL_S + tokenChannels * 20 * NS;
/** standard-ops: merge, unmerge and the plan as ONNX operators (the greedy selection is the slow part). */
const GRAPH_S = (tokenChannels: number) => 0.3e-3 + tokenChannels * 4 * NS + (1e-3 + tokenChannels * 10 * NS) / 5;
/** Merge only where the estimate saves this much more than it costs. */
const MARGIN = 1.25;

export function mergedTokens(image: number, ratio: number): number {
  return Math.max(1, Math.floor((1 - ratio) * image + 0.5));
}

/** The estimate for one block in one patch mode. */
export function payoff(c: BlockCost, mode: PatchMode): Payoff {
  const d = c.channels / Math.max(1, c.heads);
  const T = c.image + c.text;
  const Tm = mergedTokens(c.image, c.ratio) + c.text;
  const scores = (t: number) => c.batch * c.heads * t * t;
  const dense = scores(T) * (c.fused ? fusedScore(d) : ortScore(d));
  const tokenChannels = c.batch * T * c.channels;
  let merged: number;
  let overhead: number;
  if (mode === 'segments') {
    merged = scores(Tm) * fusedScore(d);
    overhead = TOMA_CALL_S + PLAN_S(tokenChannels) + CUT_S(tokenChannels) + (c.rope ? ROPE_S(tokenChannels) : 0);
  } else {
    merged = scores(Tm) * (c.fused ? fusedScore(d) : ortScore(d));
    overhead = GRAPH_S(tokenChannels);
  }
  const saved = dense - merged;
  const pays = saved > MARGIN * overhead;
  const ms = (x: number) => (x * 1e3).toFixed(Math.abs(x) < 1e-3 ? 3 : 1);
  const reason = pays
    ? `merging saves about ${ms(saved)} ms of attention for ${ms(overhead)} ms of plan, merge and ${mode === 'segments' ? 'cut' : 'graph'} work`
    : `dense by default: ${c.image} image tokens in ${c.heads} heads of ${d} is too little attention for merging to pay ` +
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
  rope?: boolean;
}

function costOf(b: PolicyBlock, ratio: number): BlockCost | undefined {
  if (b.kind === 'cross' || !b.grid || !(ratio > 0)) return undefined;
  return {
    batch: typeof b.batch === 'number' && b.batch > 0 ? b.batch : 1,
    image: b.grid[0] * b.grid[1],
    text: b.text,
    channels: b.channels,
    heads: b.heads,
    ratio,
    fused: b.fused,
    rope: b.rope,
  };
}

/**
 * The default for options.dense in ONNX sessions: blocks where merging cannot pay stay dense, each
 * with its reason. `ratioOf` gives a block's ratio (adaptive ratios are taken at 0.5).
 */
export function defaultDense(blocks: PolicyBlock[], ratioOf: (block: string) => number, mode: PatchMode): Map<string, string> {
  const dense = new Map<string, string>();
  for (const b of blocks) {
    const c = costOf(b, ratioOf(b.name));
    if (!c) continue;
    const p = payoff(c, mode);
    if (!p.pays) dense.set(b.name, p.reason);
  }
  return dense;
}

/**
 * The mode a model runs fastest in by the same estimate: the one whose merged blocks save the
 * most time in all. Segment mode runs toma's own kernel; standard-ops runs the merged attention in
 * onnxruntime with no cuts, which wins where heads are small and cuts many.
 */
export function chooseMode(blocks: PolicyBlock[], ratioOf: (block: string) => number): { mode: PatchMode; savedMs: Record<PatchMode, number> } {
  const savedMs: Record<PatchMode, number> = { segments: 0, 'standard-ops': 0 };
  for (const b of blocks) {
    const c = costOf(b, ratioOf(b.name));
    if (!c) continue;
    for (const mode of ['segments', 'standard-ops'] as const) {
      const p = payoff(c, mode);
      if (p.pays) savedMs[mode] += p.savedMs - p.costMs;
    }
  }
  return { mode: savedMs['standard-ops'] > savedMs.segments ? 'standard-ops' : 'segments', savedMs };
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
