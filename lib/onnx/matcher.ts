// Finds the attention blocks of diffusion models as exporters write them, and the boundaries that
// graph surgery needs. Anchors:
//   - Softmax whose input is MatMul(q, K^T) (through Mul/Div scale nodes) and whose output feeds
//     MatMul(probs, v): torch.onnx TorchScript (4-D BNSH and 3-D BMM forms), dynamo, Optimum,
//     Paddle2ONNX; the scale may be one constant, or sqrt(scale) applied to q and k separately,
//     possibly computed at run time (Shape -> Slice -> Cast -> Sqrt -> ... chains);
//   - com.microsoft::MultiHeadAttention (q, k, v in BSD) and com.microsoft::Attention (packed QKV).
// From the anchor it walks q, k and v up through head reshapes, scale, per-head RMSNorm, RoPE and a
// text/image Concat (joint attention) to their projections, and the output down through the head
// merge to the output projection(s). Nothing here throws on an unfamiliar graph: what cannot be
// traced becomes a block with patchable: false and a reason, or a `skipped` entry.
import type { NodeProto } from './gen/onnx_pb';
import { GraphIndex, attrFloat, attrInt, attrInts, nodeName } from './graph';
import type { OnnxModel } from './model';
import { ShapeInfo, mulDims, type Dim } from './shapes';
import { provablyZero } from './zeros';
import { canonicalizeRope } from './canonical';

export type AttentionKind = 'self' | 'cross' | 'joint';
export type AttentionForm = 'matmul-softmax' | 'MultiHeadAttention' | 'Attention';

/** A linear projection: MatMul (+ bias Add), Gemm, or a packed-QKV slice of one. */
export interface Projection {
  /** Node name of the MatMul / Gemm / com.microsoft::Attention. */
  node: string;
  /** Node name of the bias Add, when the bias is a separate node. */
  biasNode?: string;
  /** Initializer / Constant name of the weight. */
  weight: string;
  /** Tensor the projection reads (for q: the norm output, the merge boundary). */
  input: string;
  /** Tensor after the bias. */
  output: string;
  inFeatures?: number;
  outFeatures?: number;
  /** Packed QKV (one projection to 3C, then sliced): which third this stream takes. */
  packed?: { index: number; of: number };
}

/** Rotary embedding applied on a stream: out = x * cos + rotate(x) * sin. */
export interface Rope {
  /** The Add producing the rotated tensor, and every node of the rotation. */
  output: string;
  input: string;
  cos: string;
  sin: string;
  nodes: string[];
}

/** One of q, k, v: from its projection(s) to the tensor entering the attention core. */
export interface Stream {
  /** One projection, or [text, image] (prefix first) for joint attention. */
  projections: Projection[];
  /** Tensor entering the core (the MatMul input, MHA input), scale included. */
  coreInput: string;
  /** Reshape / Transpose / Squeeze / Slice nodes between projection and core (head split). */
  layoutNodes: string[];
  /** Mul/Div nodes applying the softmax scale on this stream (sqrt(scale) on q and k). */
  scaleNodes: string[];
  /** Per-head normalisation (RMSNorm / LayerNorm) nodes. */
  normNodes: string[];
  rope?: Rope;
  /** Joint attention: the Concat along the sequence axis, and its parts in order (prefix first). */
  concat?: { node: string; axis: number; parts: string[] };
}

export interface Hazard {
  kind: 'baked-sequence-length' | 'attention-bias' | 'untraced' | 'unknown-heads';
  node?: string;
  message: string;
  /** The rewrite that removes the hazard, when there is one. */
  rewrite?: { node: string; input: string; index: number; from: number; to: number };
}

export interface AttentionBlock {
  name: string;
  kind: AttentionKind;
  form: AttentionForm;
  heads: number;
  channels: number;
  headDim: number;
  /** Image token grid [H, W], when the graph tells it. */
  grid?: [number, number];
  /** Where the grid comes from: the NCHW feature map that becomes the tokens. */
  gridSource?: { tensor: string; dims: Dim[] };
  /** Text tokens in front of the image tokens (joint attention; a self block over [text; image]). */
  prefix?: number;
  /** Text tokens after the image tokens (SD3's joint attention puts the image first). */
  suffix?: number;
  /** The graph input the image tokens come from, when the graph takes tokens (no NCHW map). */
  tokensInput?: string;
  /** Text tokens share the sequence (joint, or one [text ; image] concat): on which side of the image. */
  text?: 'before' | 'after';
  /** Sequence length of q (image tokens, or prefix + image for joint), when known. */
  tokens?: Dim;
  /** Batch of the block's tokens, when known. */
  batch?: Dim;
  /** Softmax scale, when it is a constant or folds to one; undefined = unknown. */
  scale?: number;
  patchable: boolean;
  reason?: string;
  hazards: Hazard[];
  /** Facts that do not block patching (unknown grid, RoPE present, ...). */
  notes: string[];
  boundaries: {
    /** Norm output feeding the (image) q/k/v projections: where merging starts. */
    normOutput: string;
    /** Node producing normOutput, and its op type. */
    normNode?: string;
    normOp?: string;
    /** Joint: norm output feeding the text (prefix) projections. */
    contextNormOutput?: string;
    q: Stream;
    k: Stream;
    v: Stream;
    /** The attention core: scores MatMul, scale nodes, Softmax, context MatMul; or the fused node. */
    core: {
      nodes: string[];
      scores?: string;
      softmax?: string;
      context?: string;
      fused?: string;
      /** Adds of a provably zero tensor on the scores (baddbmm with beta=0): no mask, dropped when merging. */
      zeroAdds?: string[];
    };
    /** Nodes from the core output to the head-merged [B, S, C] tensor, and that tensor. */
    headMerge: { nodes: string[]; output: string };
    /** Joint: the Slice nodes splitting text / image after the head merge (no text part when it is dropped). */
    split?: { text?: string; image: string; textOutput?: string; imageOutput: string };
    /** Output projection (image stream for joint), and the text output projection for joint. */
    toOut?: Projection;
    toAddOut?: Projection;
  };
}

export interface MatchReport {
  blocks: AttentionBlock[];
  /** Softmax / fused nodes examined and not reported as attention, with the reason. */
  skipped: Array<{ node: string; reason: string }>;
}

const LAYOUT_OPS = new Set(['Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity', 'Cast', 'Dropout']);
const PASS_DOWN = new Set(['Reshape', 'Transpose', 'Identity', 'Cast', 'Dropout', 'Squeeze', 'Unsqueeze']);
const NORM_OPS = new Set(['LayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization']);
const SHAPE_CHAIN_OPS = new Set([
  'Shape', 'Constant', 'Gather', 'Slice', 'Cast', 'Sqrt', 'Reciprocal', 'Div', 'Mul', 'Add', 'Sub', 'Pow',
  'Unsqueeze', 'Squeeze', 'Concat', 'Identity', 'ConstantOfShape', 'Floor', 'Ceil',
]);

class TraceError extends Error {}

interface GridFind {
  grid?: [number, number];
  source?: { tensor: string; dims: Dim[] };
  why?: string;
  /** The graph input the tokens come from (no NCHW map). */
  tokensInput?: string;
  /** The tokens were joined from parts along the token axis: text tokens before / after the image part. */
  sequence?: { before: Dim; after: Dim; concat: string; part: number };
}

/**
 * `bind`: concrete shapes of the graph inputs (one run's feeds). Dynamic-shape models tell their
 * token grids, token counts and prefix lengths only with it; without it they stay symbolic.
 */
/**
 * The kind a report shows: a self block whose sequence holds text tokens beside the image ones
 * (Flux's single-stream blocks: one [text ; image] sequence, one set of weights) is joint attention.
 */
export function reportedKind(b: Pick<AttentionBlock, 'kind' | 'prefix' | 'suffix' | 'text'>): AttentionKind {
  return b.kind === 'self' && (b.text !== undefined || (b.prefix ?? 0) > 0 || (b.suffix ?? 0) > 0) ? 'joint' : b.kind;
}

export function matchAttention(model: OnnxModel, bind?: ReadonlyMap<string, readonly number[]>): MatchReport {
  canonicalizeRope(model.proto.graph!);
  const g = new GraphIndex(model.proto.graph!, model);
  const shapes = new ShapeInfo(g, bind);
  const m = new Matcher(g, shapes);
  return m.run();
}

class Matcher {
  readonly skipped: Array<{ node: string; reason: string }> = [];
  constructor(
    readonly g: GraphIndex,
    readonly s: ShapeInfo,
  ) {}

  run(): MatchReport {
    const blocks: AttentionBlock[] = [];
    for (const n of this.g.graph.node) {
      const dom = n.domain;
      try {
        if (n.opType === 'Softmax' && (dom === '' || dom === 'ai.onnx')) {
          const b = this.fromSoftmax(n);
          if (b) blocks.push(b);
        } else if (dom === 'com.microsoft' && (n.opType === 'MultiHeadAttention' || n.opType === 'Attention')) {
          blocks.push(this.fromFused(n));
        }
      } catch (e) {
        this.skipped.push({ node: nodeName(n), reason: `internal matcher error: ${(e as Error).message}` });
      }
    }
    const seen = new Map<string, number>();
    for (const b of blocks) {
      const c = seen.get(b.name) ?? 0;
      seen.set(b.name, c + 1);
      if (c) b.name = `${b.name}#${c}`;
    }
    return { blocks, skipped: this.skipped };
  }

  // -------------------------------------------------------------------------------------------
  // anchors

  private fromSoftmax(sm: NodeProto): AttentionBlock | undefined {
    const coreNodes: string[] = [];
    const scaleNodes: string[] = [];
    const hazards: Hazard[] = [];
    const zeroAdds: string[] = [];
    let scale = 1;
    let scaleKnown = true;
    // up: Softmax <- (Mul|Div scale | Add bias | Cast)* <- MatMul(q, kT)
    let t = sm.input[0];
    let scores: NodeProto | undefined;
    for (let i = 0; i < 8; i++) {
      const p = this.g.producer(t);
      if (!p) break;
      if (p.opType === 'MatMul') {
        scores = p;
        break;
      }
      if ((p.opType === 'Mul' || p.opType === 'Div') && p.input.length === 2) {
        const which = this.scalarOperand(p);
        if (which < 0) break;
        const v = this.scalarValue(p.input[which]);
        if (v === undefined) scaleKnown = false;
        else scale *= p.opType === 'Mul' ? v : 1 / v;
        scaleNodes.push(nodeName(p));
        t = p.input[1 - which];
        continue;
      }
      if (p.opType === 'Add' && p.input.length === 2) {
        const zero = [0, 1].find((i) => provablyZero(this.g, p.input[i]));
        if (zero !== undefined) {
          // baddbmm(empty, q, k^T, beta=0) as exported: adds nothing, so it is no mask
          zeroAdds.push(nodeName(p));
          scaleNodes.push(nodeName(p));
          t = p.input[1 - zero];
          continue;
        }
        hazards.push({
          kind: 'attention-bias',
          node: nodeName(p),
          message: `an additive mask or bias (${nodeName(p)}) is applied to the attention scores; merging tokens would need it merged too`,
        });
        // follow the scores: the operand that leads to MatMul(q, kT) through scale nodes
        const scoreSide = (x: string) => ['MatMul', 'Mul', 'Div'].includes(this.g.producer(x)?.opType ?? '') && !this.g.isConst(x);
        t = scoreSide(p.input[0]) || !scoreSide(p.input[1]) ? p.input[0] : p.input[1];
        continue;
      }
      if (p.opType === 'Cast' || p.opType === 'Identity') {
        t = p.input[0];
        continue;
      }
      break;
    }
    if (!scores) {
      this.skipped.push({ node: nodeName(sm), reason: 'the Softmax input is not a MatMul of two activations (not attention)' });
      return undefined;
    }
    if (this.g.isConst(scores.input[0]) || this.g.isConst(scores.input[1])) {
      this.skipped.push({ node: nodeName(sm), reason: `${nodeName(scores)} multiplies by a constant weight: a classifier, not attention` });
      return undefined;
    }
    // down: Softmax -> (Cast|Dropout)* -> MatMul(probs, v)
    let probs = sm.output[0];
    let context: NodeProto | undefined;
    for (let i = 0; i < 4; i++) {
      const cons = this.g.consumersOf(probs);
      if (cons.length !== 1) break;
      const c = cons[0];
      if (c.opType === 'MatMul' && c.input[0] === probs) {
        context = c;
        break;
      }
      if (c.opType === 'Cast' || c.opType === 'Dropout' || c.opType === 'Identity') {
        coreNodes.push(nodeName(c));
        probs = c.output[0];
        continue;
      }
      break;
    }
    if (!context) {
      this.skipped.push({ node: nodeName(sm), reason: 'the Softmax output does not feed MatMul(probs, v) (not attention)' });
      return undefined;
    }
    coreNodes.unshift(nodeName(scores), ...scaleNodes, nodeName(sm));
    coreNodes.push(nodeName(context));

    // k: strip the transpose of K^T
    const [kTensor, kTransposeNode] = this.stripKTranspose(scores.input[1]);
    const failures: string[] = [];
    const q = this.walkStream(scores.input[0], 'q', failures);
    const k = this.walkStream(kTensor, 'k', failures);
    if (kTransposeNode) k.layoutNodes.unshift(kTransposeNode);
    const v = this.walkStream(context.input[1], 'v', failures);
    for (const st of [q, k]) {
      for (const sn of st.scaleNodes) {
        const p = this.nodeByName(sn);
        if (!p) continue;
        const which = this.scalarOperand(p);
        const val = which >= 0 ? this.scalarValue(p.input[which]) : undefined;
        if (val === undefined) scaleKnown = false;
        else scale *= p.opType === 'Mul' ? val : 1 / val;
      }
    }
    const down = this.walkDown(context.output[0]);
    return this.assemble({
      form: 'matmul-softmax',
      anchor: sm,
      q,
      k,
      v,
      down,
      core: { nodes: coreNodes, scores: nodeName(scores), softmax: nodeName(sm), context: nodeName(context), ...(zeroAdds.length ? { zeroAdds } : {}) },
      scale: scaleKnown ? scale : undefined,
      hazards,
      failures,
    });
  }

  private fromFused(n: NodeProto): AttentionBlock {
    const failures: string[] = [];
    const heads = attrInt(n, 'num_heads');
    const scaleAttr = attrFloat(n, 'scale');
    let q: Stream, k: Stream, v: Stream;
    let form: AttentionForm;
    if (n.opType === 'Attention') {
      form = 'Attention';
      const w = n.input[1];
      const dims = this.g.constDims(w);
      const proj = (index: number): Projection => ({
        node: nodeName(n),
        weight: w,
        input: n.input[0],
        output: n.output[0],
        inFeatures: dims?.[0],
        outFeatures: dims ? dims[1] / 3 : undefined,
        packed: { index, of: 3 },
      });
      const mk = (i: number): Stream => ({ projections: [proj(i)], coreInput: n.input[0], layoutNodes: [], scaleNodes: [], normNodes: [] });
      q = mk(0);
      k = mk(1);
      v = mk(2);
    } else {
      form = 'MultiHeadAttention';
      q = this.walkStream(n.input[0], 'q', failures);
      if (!n.input[1] || !n.input[2]) {
        failures.push('MultiHeadAttention with packed q/k/v in one input is not supported');
        k = { ...q, projections: [] };
        v = { ...q, projections: [] };
      } else {
        k = this.walkStream(n.input[1], 'k', failures);
        v = this.walkStream(n.input[2], 'v', failures);
      }
      if (n.input[4] || n.input[5]) failures.push('MultiHeadAttention has a key padding mask or attention bias');
    }
    const down = this.walkDown(n.output[0]);
    const b = this.assemble({
      form,
      anchor: n,
      q,
      k,
      v,
      down,
      core: { nodes: [nodeName(n)], fused: nodeName(n) },
      scale: scaleAttr,
      hazards: [],
      failures,
      heads,
    });
    if (scaleAttr === undefined && b.headDim > 0) b.scale = 1 / Math.sqrt(b.headDim);
    return b;
  }

  // -------------------------------------------------------------------------------------------
  // streams

  private stripKTranspose(t: string): [string, string | undefined] {
    const p = this.g.producer(t);
    if (p?.opType === 'Transpose') {
      const perm = attrInts(p, 'perm');
      const r = perm?.length ?? 0;
      // swaps the last two axes (K^T), or (0,2,3,1): head split and transpose in one
      if (perm && r >= 2 && perm[r - 1] === r - 2 && perm[r - 2] === r - 1) return [p.input[0], nodeName(p)];
      if (perm && perm.join(',') === '0,2,3,1') return [p.input[0], nodeName(p)];
    }
    // a k stream with Mul(sqrt scale) before the transpose
    if (p && (p.opType === 'Mul' || p.opType === 'Div')) {
      const which = this.scalarOperand(p);
      if (which >= 0) {
        const [inner, tn] = this.stripKTranspose(p.input[1 - which]);
        if (tn) return [t, undefined]; // walkStream records the scale, then meets the Transpose
        void inner;
      }
    }
    return [t, undefined];
  }

  private walkStream(start: string, label: string, failures: string[], depth = 0): Stream {
    const st: Stream = { projections: [], coreInput: start, layoutNodes: [], scaleNodes: [], normNodes: [] };
    let t = start;
    for (let step = 0; step < 64; step++) {
      const p = this.g.producer(t);
      if (!p) {
        failures.push(`${label}: reaches ${this.g.inputs.has(t) ? 'graph input' : 'tensor'} ${t} without a projection`);
        return st;
      }
      const op = p.opType;
      const proj = this.projectionAt(t);
      if (proj) {
        st.projections.push(proj);
        return st;
      }
      if (LAYOUT_OPS.has(op)) {
        st.layoutNodes.push(nodeName(p));
        t = p.input[0];
        continue;
      }
      if (op === 'Slice' || op === 'Gather' || op === 'Split') {
        // packed QKV: one projection, sliced
        st.layoutNodes.push(nodeName(p));
        t = p.input[0];
        continue;
      }
      if (NORM_OPS.has(op)) {
        st.normNodes.push(nodeName(p));
        t = p.input[0];
        continue;
      }
      if ((op === 'Mul' || op === 'Div') && p.input.length === 2) {
        const which = this.scalarOperand(p);
        if (which >= 0 && !(op === 'Div' && which === 0)) {
          st.scaleNodes.push(nodeName(p));
          t = p.input[1 - which];
          continue;
        }
        const norm = this.rmsNormInput(p);
        if (norm) {
          st.normNodes.push(...norm.nodes);
          t = norm.input;
          continue;
        }
        failures.push(`${label}: cannot trace through ${op} ${nodeName(p)}`);
        return st;
      }
      if (op === 'Add' && p.input.length === 2) {
        const rope = this.ropeAt(p);
        if (rope) {
          st.rope = rope;
          t = rope.input;
          continue;
        }
        failures.push(`${label}: cannot trace through Add ${nodeName(p)}`);
        return st;
      }
      if (op === 'Concat' && depth === 0) {
        const axis = attrInt(p, 'axis', 0)!;
        st.concat = { node: nodeName(p), axis, parts: [...p.input] };
        for (const part of p.input) {
          const sub = this.walkStream(part, `${label}[${st.projections.length}]`, failures, depth + 1);
          st.projections.push(...sub.projections);
          st.layoutNodes.push(...sub.layoutNodes);
          st.scaleNodes.push(...sub.scaleNodes);
          st.normNodes.push(...sub.normNodes);
          if (sub.rope && !st.rope) st.rope = sub.rope;
        }
        return st;
      }
      failures.push(`${label}: cannot trace through ${op} ${nodeName(p)}`);
      return st;
    }
    failures.push(`${label}: path from ${start} is too long`);
    return st;
  }

  /** A projection producing tensor t: MatMul(x, W), Add(MatMul(x, W), b), Gemm(x, W, b). */
  private projectionAt(t: string): Projection | undefined {
    const p = this.g.producer(t);
    if (!p) return undefined;
    if (p.opType === 'MatMul' && !this.g.isConst(p.input[0]) && this.g.isConst(p.input[1])) {
      const d = this.g.constDims(p.input[1]);
      if (!d || d.length !== 2) return undefined;
      return { node: nodeName(p), weight: p.input[1], input: p.input[0], output: t, inFeatures: d[0], outFeatures: d[1] };
    }
    if (p.opType === 'Gemm' && this.g.isConst(p.input[1])) {
      const d = this.g.constDims(p.input[1]);
      if (!d || d.length !== 2) return undefined;
      const tb = attrInt(p, 'transB', 0) === 1;
      return { node: nodeName(p), weight: p.input[1], input: p.input[0], output: t, inFeatures: tb ? d[1] : d[0], outFeatures: tb ? d[0] : d[1] };
    }
    if (p.opType === 'Add' && p.input.length === 2) {
      for (const i of [0, 1]) {
        const bias = p.input[1 - i];
        const bd = this.g.constDims(bias);
        if (!bd || bd.length !== 1) continue;
        const inner = this.projectionAt(p.input[i]);
        if (inner && this.g.producer(p.input[i])?.opType !== 'Add') {
          return { ...inner, biasNode: nodeName(p), output: t };
        }
      }
    }
    return undefined;
  }

  /** RMSNorm written out: Mul(Mul(x, r) | Div(x, r), w?) with r = f(ReduceMean(Pow(x, 2))). */
  private rmsNormInput(p: NodeProto): { input: string; nodes: string[] } | undefined {
    const nodes = [nodeName(p)];
    let cur = p;
    if (p.opType === 'Mul') {
      for (const i of [0, 1]) {
        const w = p.input[1 - i];
        // a per-channel weight: [d], or [1, .., 1, d] once an optimiser has reshaped it
        const wd = this.g.constDims(w);
        if (wd && wd.slice(0, -1).every((d) => d === 1)) {
          const inner = this.g.producer(p.input[i]);
          if (inner && (inner.opType === 'Mul' || inner.opType === 'Div')) {
            const r = this.rmsNormInput(inner);
            if (r) return { input: r.input, nodes: [...nodes, ...r.nodes] };
          }
        }
      }
    }
    cur = p;
    for (const i of cur.opType === 'Div' ? [0] : [0, 1]) {
      const x = cur.input[i];
      const r = cur.input[1 - i];
      if (this.reaches(r, x, 8) && this.ancestorOps(r, 8).has('ReduceMean')) return { input: x, nodes };
    }
    return undefined;
  }

  /** The tensor under a chain of Cast / Identity nodes. */
  private uncast(t: string): string {
    for (let i = 0; i < 4; i++) {
      const p = this.g.producer(t);
      if (!p || (p.opType !== 'Cast' && p.opType !== 'Identity')) break;
      t = p.input[0];
    }
    return t;
  }

  /** RoPE: Add(Mul(x, cos), Mul(rot(x), sin)), with rot(x) computed from x (or from the x under a Cast). */
  private ropeAt(add: NodeProto): Rope | undefined {
    const m0 = this.g.producer(add.input[0]);
    const m1 = this.g.producer(add.input[1]);
    if (m0?.opType !== 'Mul' || m1?.opType !== 'Mul') return undefined;
    for (const [a, b] of [
      [m0, m1],
      [m1, m0],
    ] as const) {
      for (const i of [0, 1]) {
        const x = a.input[i];
        const cos = a.input[1 - i];
        // diffusers rotates x.float() and rotate(x).float(): the rotation is computed from x before the Cast
        const xs = [x, this.uncast(x)];
        if (xs.some((y) => this.reaches(cos, y, 16))) continue;
        for (const j of [0, 1]) {
          const rot = b.input[j];
          const sin = b.input[1 - j];
          if (xs.includes(rot) || xs.includes(this.uncast(rot)) || xs.some((y) => this.reaches(sin, y, 16))) continue;
          if (xs.some((y) => this.reaches(rot, y, 16))) {
            return {
              output: add.output[0],
              input: x,
              cos,
              sin,
              nodes: [nodeName(add), nodeName(a), nodeName(b), ...new Set(xs.flatMap((y) => this.nodesBetween(rot, y, 16)))],
            };
          }
        }
      }
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // output side

  private walkDown(start: string): {
    nodes: string[];
    output: string;
    toOut?: Projection;
    /** Joint attention: the Slices of the head-merged output (text and image, in either order; one when the text part is dropped). */
    parts?: Array<{ node: string; start?: number; output: string; proj?: Projection }>;
    /** Why no output projection was found (a fact, not a failure: segment mode does not need one). */
    note?: string;
  } {
    const nodes: string[] = [];
    let t = start;
    for (let i = 0; i < 16; i++) {
      const cons = this.g.consumersOf(t).filter((c) => c.opType !== 'Shape');
      if (cons.length === 1 && PASS_DOWN.has(cons[0].opType)) {
        nodes.push(nodeName(cons[0]));
        t = cons[0].output[0];
        continue;
      }
      if (cons.length === 1) {
        const proj = this.projectionFrom(cons[0], t);
        if (proj) return { nodes, output: t, toOut: proj };
      }
      const slices = cons.filter((c) => c.opType === 'Slice' && this.sliceAxis(c) === 1);
      if (slices.length && slices.length === cons.length && slices.length <= 2) {
        return {
          nodes,
          output: t,
          parts: slices.map((sl) => ({ node: nodeName(sl), start: this.sliceStart(sl), output: sl.output[0], proj: this.projectionFromTensor(sl.output[0]) })),
        };
      }
      return { nodes, output: t, note: `the attention output ${t} is not followed by an output projection (read by ${cons.map((c) => c.opType).join(', ') || 'nothing'})` };
    }
    return { nodes, output: t, note: 'the head merge is too long to follow' };
  }

  /** The axis a Slice cuts (a single axis; undefined when it cuts several or it cannot tell). */
  private sliceAxis(sl: NodeProto): number | undefined {
    const axes = attrInts(sl, 'axes') ?? (sl.input[3] ? (this.s.value(sl.input[3]) as number[] | undefined) : undefined);
    const rank = this.s.shape(sl.input[0])?.length;
    if (!axes) return sl.input.length >= 4 || attrInts(sl, 'starts') ? undefined : undefined;
    if (axes.length !== 1 || typeof axes[0] !== 'number') return undefined;
    return axes[0] < 0 && rank ? axes[0] + rank : axes[0];
  }

  private projectionFrom(c: NodeProto, t: string): Projection | undefined {
    if ((c.opType === 'MatMul' && c.input[0] === t) || (c.opType === 'Gemm' && c.input[0] === t)) {
      let out = c.output[0];
      const cons = this.g.consumersOf(out);
      if (cons.length === 1 && cons[0].opType === 'Add' && cons[0].input.some((x) => (this.g.constDims(x)?.length ?? 0) === 1 && this.g.isConst(x))) {
        out = cons[0].output[0];
      }
      return this.projectionAt(out) ?? this.projectionAt(c.output[0]);
    }
    return undefined;
  }

  private projectionFromTensor(t: string): Projection | undefined {
    for (const c of this.g.consumersOf(t)) {
      const p = this.projectionFrom(c, t);
      if (p) return p;
    }
    return undefined;
  }

  private sliceStart(sl: NodeProto): number | undefined {
    const starts = attrInts(sl, 'starts') ?? (this.s.value(sl.input[1]) as number[] | undefined);
    return starts && typeof starts[0] === 'number' ? starts[0] : undefined;
  }

  // -------------------------------------------------------------------------------------------
  // assembling a block

  private assemble(a: {
    form: AttentionForm;
    anchor: NodeProto;
    q: Stream;
    k: Stream;
    v: Stream;
    down: ReturnType<Matcher['walkDown']>;
    core: AttentionBlock['boundaries']['core'];
    scale: number | undefined;
    hazards: Hazard[];
    failures: string[];
    heads?: number;
  }): AttentionBlock {
    const { q, k, v, down } = a;
    const hazards = [...a.hazards];
    const notes: string[] = [];
    const failures = [...a.failures];
    if (down.note) notes.push(down.note);

    const joint = !!q.concat && q.projections.length === 2 && q.concat.parts.length === 2;
    if (q.concat && q.projections.length > 2) failures.push(`q joins ${q.projections.length} projected streams; toma merges one image stream with one text stream`);
    // Which part of a joint sequence holds the image: the one whose tokens come from an NCHW map
    // (SD3 puts the image first); where neither or both do, the last (Flux puts the text first).
    let imageIndex = q.projections.length - 1;
    if (joint) {
      const fromMap = q.projections.map((pr) => {
        const fg = this.findGrid(pr.input);
        return !!(fg.grid || fg.source);
      });
      if (fromMap.filter(Boolean).length === 1) imageIndex = fromMap.indexOf(true);
    }
    const imageProj = q.projections[imageIndex];
    const textProj = joint ? q.projections[1 - imageIndex] : undefined;
    const kImage = joint ? k.projections[imageIndex] : k.projections[k.projections.length - 1];
    let kind: AttentionKind = 'self';
    if (joint) kind = 'joint';
    else if (imageProj && kImage && kImage.input !== imageProj.input) kind = 'cross';

    // heads and channels
    let channels = imageProj?.outFeatures ?? 0;
    if (imageProj?.packed === undefined && imageProj && q.layoutNodes.some((n) => this.nodeByName(n)?.opType === 'Slice')) {
      // one projection sliced into q, k, v (Paddle2ONNX, some exporters)
      if (kImage && kImage.node === imageProj.node) {
        const of = 3;
        channels = (imageProj.outFeatures ?? 0) / of;
        for (const [st, idx] of [
          [q, 0],
          [k, 1],
          [v, 2],
        ] as const) {
          const pr = st.projections[st.projections.length - 1];
          if (pr) pr.packed = { index: idx, of };
        }
      }
    }
    let heads = a.heads ?? 0;
    let headDim = 0;
    if (!heads) {
      const hd = this.headsFromLayout(q, channels);
      heads = hd.heads;
      headDim = hd.headDim;
    }
    if (heads && channels && !headDim) headDim = channels / heads;
    if (!heads || !Number.isInteger(headDim)) {
      hazards.push({ kind: 'unknown-heads', message: 'the number of heads could not be read from the graph' });
    }

    // scale from a runtime chain that did not fold: assume the default when it is the Shape-derived one
    let scale = a.scale;
    if (scale !== undefined && !Number.isFinite(scale)) scale = undefined;

    // norm boundary and grid
    const normOutput = imageProj?.input ?? a.anchor.input[0];
    const normProducer = this.g.producer(normOutput);
    const tokens = this.s.shape(normOutput)?.[1];
    const grid = this.findGrid(normOutput);
    if (!grid.grid) notes.push(grid.why ?? 'token grid unknown: pass grid');
    if (q.rope) notes.push(`RoPE on q and k (cos ${q.rope.cos}, sin ${q.rope.sin}): a merged token takes its destination's rotary position`);

    // text tokens beside the image ones: a joint block's other stream, or a self block whose token
    // sequence was concatenated from text and image upstream (Flux's single-stream blocks)
    let prefix: number | undefined;
    let suffix: number | undefined;
    if (joint && q.concat) {
      const lens = q.concat.parts.map((part) => {
        const shp = this.s.shape(part);
        const ax = q.concat!.axis < 0 ? q.concat!.axis + (shp?.length ?? 0) : q.concat!.axis;
        return shp?.[ax];
      });
      const before = lens.slice(0, imageIndex);
      const after = lens.slice(imageIndex + 1);
      if ([...before, ...after].every((d) => typeof d === 'number')) {
        prefix = (before as number[]).reduce((x, y) => x + y, 0);
        suffix = (after as number[]).reduce((x, y) => x + y, 0);
      } else notes.push('text length unknown: the text part of the joint sequence has no known length');
    } else if (grid.sequence) {
      const { before, after } = grid.sequence;
      if (typeof before === 'number' && typeof after === 'number') {
        prefix = before;
        suffix = after;
      } else notes.push('text length unknown: the text part of the token sequence has no known length');
    }
    if (prefix || suffix) notes.push(`${prefix ? `${prefix} text tokens before` : ''}${prefix && suffix ? ' and ' : ''}${suffix ? `${suffix} text tokens after` : ''} the image tokens, never merged`);

    // joint output: which Slice of the head-merged output is the image (its start is the image's offset)
    let split: AttentionBlock['boundaries']['split'];
    let toOut = down.toOut;
    let toAddOut: Projection | undefined;
    if (down.parts) {
      const imageStart = imageIndex === 0 ? 0 : prefix;
      const img = down.parts.find((pt) => pt.start === imageStart) ?? (imageIndex > 0 ? down.parts.find((pt) => pt.start !== 0) : undefined);
      const txt = down.parts.find((pt) => pt !== img);
      if (img) {
        split = { image: img.node, imageOutput: img.output, ...(txt ? { text: txt.node, textOutput: txt.output } : {}) };
        toOut = img.proj;
        toAddOut = txt?.proj;
        if (!txt) notes.push('the text part of the attention output is not used (a last joint block, context_pre_only)');
      } else notes.push('the Slices of the attention output do not show which part is the image');
    }

    // hazards: shape constants that bake the sequence length
    const seqLens = new Set<number>();
    const qLen = this.s.shape(normOutput)?.[1];
    if (typeof qLen === 'number') seqLens.add(qLen);
    if (joint && prefix !== undefined && typeof qLen === 'number') seqLens.add(prefix + qLen);
    const avoid = new Set([heads, headDim, channels, 0, 1, -1]);
    // where each Reshape puts the token axis, followed from the streams' [B, S, C] ends: a constant
    // entry there bakes the sequence length, whatever other dims happen to equal it
    const tokenEntry = new Map<string, number | undefined>();
    for (const st of kind === 'cross' ? [q] : [q, k, v]) for (const [n, e] of this.tokenAxisUp(st)) tokenEntry.set(n, e);
    for (const [n, e] of this.tokenAxisDown(a.core, down.nodes)) tokenEntry.set(n, e);
    for (const n of [...q.layoutNodes, ...(kind === 'cross' ? [] : [...k.layoutNodes, ...v.layoutNodes]), ...down.nodes]) {
      const node = this.nodeByName(n);
      if (!node || node.opType !== 'Reshape' || !this.g.isConst(node.input[1])) continue;
      const target = this.g.constValues(node.input[1], 16);
      if (!target) continue;
      const entry = tokenEntry.get(n);
      target.forEach((d, i) => {
        if (!seqLens.has(d)) return;
        if (entry !== undefined ? i !== entry : avoid.has(d)) return;
        const inShape = this.s.shape(node.input[0]);
        const to = !target.includes(-1) ? -1 : inShape?.[i] === d ? 0 : undefined;
        hazards.push({
          kind: 'baked-sequence-length',
          node: n,
          message: `Reshape ${n} bakes the sequence length ${d} into its shape constant ${node.input[1]} (entry ${i})` +
            (to === undefined ? ' and no -1/0 rewrite removes it' : `; rewrite entry ${i} to ${to}`),
          rewrite: to === undefined ? undefined : { node: n, input: node.input[1], index: i, from: d, to },
        });
      });
    }

    const name = this.blockName(a.anchor, imageProj);
    let patchable = true;
    let reason: string | undefined;
    if (failures.length) {
      patchable = false;
      reason = `untraced: ${failures.join('; ')}`;
      for (const f of failures) hazards.push({ kind: 'untraced', message: f });
    } else if (kind === 'cross') {
      patchable = false;
      reason = `cross-attention: k and v are projected from ${kImage?.input}, not from the tokens that q reads; toma merges self- and joint attention only`;
    } else if (hazards.some((h) => h.kind !== 'baked-sequence-length' || !h.rewrite)) {
      patchable = false;
      const baked = hazards.filter((h) => h.kind === 'baked-sequence-length');
      const other = hazards.filter((h) => h.kind !== 'baked-sequence-length');
      const parts = other.map((h) => h.message);
      if (baked.length) {
        const lens = [...new Set(baked.map((h) => h.rewrite?.from ?? h.message.match(/length (\d+)/)?.[1]))].join(', ');
        const fixable = baked.every((h) => h.rewrite);
        parts.push(
          `${baked.length} Reshape shape constant${baked.length > 1 ? 's' : ''} bake${baked.length > 1 ? '' : 's'} the sequence length ${lens} ` +
            `(${baked.map((h) => h.node).join(', ')}); ` +
            (fixable ? 'patchable after the rewrites listed in hazards (entry -> -1 or 0)' : 'not every one can be rewritten to -1 or 0'),
        );
      }
      reason = parts.join('; ');
    } else if (hazards.length) {
      // a static export: its head reshapes bake the sequence length, which merging rewrites to -1 / 0
      const lens = [...new Set(hazards.map((h) => h.rewrite!.from))].join(', ');
      notes.push(`${hazards.length} Reshape shape constant${hazards.length > 1 ? 's bake' : ' bakes'} the sequence length ${lens}; patching rewrites ${hazards.length > 1 ? 'them' : 'it'} to -1 / 0`);
    }
    return {
      name,
      kind,
      form: a.form,
      heads,
      channels,
      headDim,
      grid: grid.grid,
      gridSource: grid.source,
      ...(grid.tokensInput ? { tokensInput: grid.tokensInput } : {}),
      ...(joint ? { text: imageIndex === 0 ? ('after' as const) : ('before' as const) } : grid.sequence ? { text: grid.sequence.part === 0 ? ('after' as const) : ('before' as const) } : {}),
      prefix,
      ...(suffix ? { suffix } : {}),
      tokens,
      batch: this.s.shape(normOutput)?.[0],
      scale,
      patchable,
      reason,
      hazards,
      notes,
      boundaries: {
        normOutput,
        normNode: normProducer ? nodeName(normProducer) : undefined,
        normOp: normProducer?.opType,
        contextNormOutput: textProj?.input,
        q,
        k,
        v,
        core: a.core,
        headMerge: { nodes: down.nodes, output: down.output },
        split,
        toOut,
        toAddOut,
      },
    };
  }

  /**
   * The token axis through a q/k/v stream, from its projection's [B, S, C] output down to the core:
   * for each Reshape on the way, the target entry that holds the token axis (undefined where it
   * cannot be followed: a Reshape that merges the token axis with another, unknown shapes).
   */
  private tokenAxisUp(st: Stream): Map<string, number | undefined> {
    const out = new Map<string, number | undefined>();
    const proj = st.projections[st.projections.length - 1];
    if (!proj || st.concat) return out;
    const layout = new Set(st.layoutNodes);
    const chain: NodeProto[] = [];
    let t = st.coreInput;
    for (let i = 0; i < 64 && t !== proj.output; i++) {
      const p = this.g.producer(t);
      if (!p) return out;
      chain.unshift(p);
      if (st.rope && t === st.rope.output) t = st.rope.input;
      else if ((p.opType === 'Mul' || p.opType === 'Div') && !layout.has(nodeName(p))) {
        const which = this.scalarOperand(p);
        t = which >= 0 ? p.input[1 - which] : p.input[0];
        if (which < 0) {
          const norm = this.rmsNormInput(p);
          if (!norm) return out;
          t = norm.input;
        }
      } else t = p.input[0];
    }
    if (t !== proj.output) return out;
    let axis: number | undefined = 1;
    for (const n of chain) axis = this.followAxis(n, axis, out);
    return out;
  }

  /** The same from the core's output (tokens on its second-to-last axis) through the head merge. */
  private tokenAxisDown(core: AttentionBlock['boundaries']['core'], nodes: string[]): Map<string, number | undefined> {
    const out = new Map<string, number | undefined>();
    const start = core.context ?? core.fused;
    const n0 = start ? this.nodeByName(start) : undefined;
    const rank = n0 ? this.s.shape(n0.output[0])?.length : undefined;
    let axis: number | undefined = rank === undefined ? undefined : core.fused ? 1 : rank - 2;
    for (const name of nodes) {
      const n = this.nodeByName(name);
      if (!n) return out;
      axis = this.followAxis(n, axis, out);
    }
    return out;
  }

  private followAxis(n: NodeProto, axis: number | undefined, out: Map<string, number | undefined>): number | undefined {
    if (axis === undefined) return undefined;
    if (n.opType === 'Transpose') {
      const perm = attrInts(n, 'perm');
      return perm ? perm.indexOf(axis) : undefined;
    }
    if (n.opType === 'Reshape') {
      const a = this.s.shape(n.input[0]);
      const b = this.s.shape(n.output[0]);
      let next: number | undefined;
      if (a && b && axis < a.length) {
        const before = a.slice(0, axis).reduce<Dim>((x, y) => mulDims(x, y), 1);
        let acc: Dim = 1;
        for (let j = 0; j < b.length; j++) {
          if (acc !== undefined && before !== undefined && String(acc) === String(before) && String(b[j]) === String(a[axis])) {
            next = j;
            break;
          }
          acc = mulDims(acc, b[j]);
        }
      }
      out.set(nodeName(n), next);
      return next;
    }
    if (n.opType === 'Squeeze' || n.opType === 'Unsqueeze' || n.opType === 'Flatten') return undefined;
    return axis;
  }

  private headsFromLayout(q: Stream, channels: number): { heads: number; headDim: number } {
    // the head-split Reshape: [B, S, C] -> [B, S, h, d] (or packed [B, S, 3, h, d])
    for (const n of [...q.layoutNodes].reverse()) {
      const node = this.nodeByName(n);
      if (!node || node.opType !== 'Reshape') continue;
      const out = this.s.shape(node.output[0]);
      const inp = this.s.shape(node.input[0]);
      if (!out || !inp || inp.length !== 3) continue;
      if (out.length === 4 && typeof out[2] === 'number' && typeof out[3] === 'number') return { heads: out[2], headDim: out[3] };
      if (out.length === 5 && typeof out[3] === 'number' && typeof out[4] === 'number') return { heads: out[3], headDim: out[4] };
    }
    const core = this.s.shape(q.coreInput);
    if (core?.length === 4 && typeof core[1] === 'number' && typeof core[3] === 'number') return { heads: core[1], headDim: core[3] };
    if (core?.length === 3 && typeof core[2] === 'number' && channels) return { heads: channels / core[2], headDim: core[2] };
    return { heads: 0, headDim: 0 };
  }

  /**
   * Walks up from the norm output through per-token ops to the Reshape that made tokens of an NCHW
   * map. A Concat along the token axis (text and image tokens joined into one sequence) is followed
   * into its image part: the one made from an NCHW map, else the last (text first, as Flux).
   */
  private findGrid(start: string, depth = 0): GridFind {
    const seen = new Set<string>();
    const queue = [start];
    let reachedTokensInput: string | undefined;
    while (queue.length && seen.size < 400) {
      const t = queue.shift()!;
      if (seen.has(t)) continue;
      seen.add(t);
      const p = this.g.producer(t);
      if (!p) {
        if (this.g.inputs.has(t) && (this.s.shape(t)?.length ?? 0) === 3) reachedTokensInput = t;
        continue;
      }
      const map = this.mapSource(p);
      if (map) {
        const dims = this.s.shape(map.tensor) ?? [];
        const h = dims[map.h];
        const w = dims[map.w];
        if (typeof h === 'number' && typeof w === 'number') return { grid: [h, w], source: { tensor: map.tensor, dims } };
        return {
          source: { tensor: map.tensor, dims },
          why: `token grid unknown: the tokens come from the feature map ${map.tensor} whose H, W are not static (${dims.map((d) => d ?? '?').join('x')}); known at run time from the input shapes`,
        };
      }
      if (p.opType === 'MatMul' || p.opType === 'Gemm') {
        if (this.g.isConst(p.input[1])) queue.push(p.input[0]);
        continue;
      }
      if (p.opType === 'Concat' && depth < 2) {
        const rank = this.s.shape(t)?.length;
        const axis = attrInt(p, 'axis', 0)!;
        if (rank === 3 && (axis === 1 || axis === -2) && p.input.length >= 2) {
          const parts = p.input.map((x) => this.findGrid(x, depth + 1));
          const fromMap = parts.map((x) => !!(x.grid || x.source));
          const image = fromMap.filter(Boolean).length === 1 ? fromMap.indexOf(true) : p.input.length - 1;
          const lens = p.input.map((x) => this.s.shape(x)?.[1]);
          const sum = (ds: Dim[]) => ds.reduce<Dim>((acc, d) => (typeof acc === 'number' && typeof d === 'number' ? acc + d : undefined), 0);
          return { ...parts[image], sequence: { before: sum(lens.slice(0, image)), after: sum(lens.slice(image + 1)), concat: nodeName(p), part: image } };
        }
        continue;
      }
      if (p.opType === 'Reshape' || p.opType === 'Transpose' || p.opType === 'Concat' || p.opType === 'Slice') continue;
      for (const i of p.input) {
        if (!i || this.g.isConst(i)) continue;
        const shp = this.s.shape(i);
        if (shp && shp.length !== 3) continue;
        queue.push(i);
      }
    }
    if (reachedTokensInput) return { tokensInput: reachedTokensInput, why: `token grid unknown: the graph takes tokens as input (${reachedTokensInput}); pass grid` };
    return { why: 'token grid unknown: no NCHW-to-tokens reshape found; pass grid' };
  }

  /**
   * If node p turns a feature map into [B, H*W, C] tokens: the map, and where its H and W sit. By
   * the op's semantics: a Reshape/Flatten of an NHWC map [B, H, W, C] that joins H and W (after
   * Transpose(0,2,3,1), or onnxruntime's channels-last ReorderOutput), or Transpose(0,2,1) of an
   * NCHW map [B, C, H, W] flattened to [B, C, H*W].
   */
  private mapSource(p: NodeProto): { tensor: string; h: number; w: number } | undefined {
    const shp = (t: string) => this.s.shape(t);
    const same = (a: Dim, b: Dim) => a !== undefined && b !== undefined && String(a) === String(b);
    if (p.opType === 'Reshape' || p.opType === 'Flatten') {
      const x = p.input[0];
      const a = shp(x);
      const b = shp(p.output[0]);
      if (a?.length !== 4) return undefined;
      // [B, H, W, C] -> [B, H*W, C]: the shapes say so, or the producer puts channels last
      if (b?.length === 3 && same(b[1], mulDims(a[1], a[2])) && same(b[2], a[3]) && (a[3] !== 1 || a[1] !== 1)) return { tensor: x, h: 1, w: 2 };
      const inner = this.g.producer(x);
      const channelsLast =
        (inner?.opType === 'Transpose' && attrInts(inner, 'perm')?.join(',') === '0,2,3,1') ||
        (inner?.opType === 'ReorderOutput' && inner.domain === 'com.microsoft.nchwc' && attrInt(inner, 'channels_last', 0) === 1);
      if (channelsLast && (b === undefined || b.length === 3)) return { tensor: x, h: 1, w: 2 };
      return undefined;
    }
    if (p.opType === 'Transpose' && attrInts(p, 'perm')?.join(',') === '0,2,1') {
      const inner = this.g.producer(p.input[0]);
      if ((inner?.opType === 'Reshape' || inner?.opType === 'Flatten') && shp(inner.input[0])?.length === 4) return { tensor: inner.input[0], h: 2, w: 3 };
    }
    return undefined;
  }

  private blockName(anchor: NodeProto, proj: Projection | undefined): string {
    const names = [anchor.name, proj?.node ?? ''].filter((x) => x && x.startsWith('/'));
    if (names.length === 2) {
      const a = names[0].split('/');
      const b = names[1].split('/');
      const common: string[] = [];
      for (let i = 0; i < Math.min(a.length, b.length) - 1 && a[i] === b[i]; i++) common.push(a[i]);
      const prefix = common.join('/');
      if (prefix.length > 1) return prefix;
    }
    return nodeName(anchor);
  }

  // -------------------------------------------------------------------------------------------
  // helpers

  private nodeIndex?: Map<string, NodeProto>;
  nodeByName(name: string): NodeProto | undefined {
    if (!this.nodeIndex) {
      this.nodeIndex = new Map();
      for (const n of this.g.graph.node) this.nodeIndex.set(nodeName(n), n);
    }
    return this.nodeIndex.get(name);
  }

  /** Index of the operand of a binary Mul/Div that is a scalar (constant, folded, or Shape-derived); -1 if none. */
  private scalarOperand(p: NodeProto): number {
    for (const i of [1, 0]) {
      const t = p.input[i];
      if (!t) continue;
      const dims = this.g.constDims(t);
      if (dims && dims.reduce((a, b) => a * b, 1) === 1) return i;
      const shp = this.s.shape(t);
      // a shape-derived factor of at most one element (its one dim may be unknown, not more)
      const oneElem = shp && (shp.every((d) => d === 1) || (shp.length <= 1 && shp.every((d) => d === 1 || d === undefined)));
      if ((oneElem || shp === undefined) && this.shapeDerived(t)) return i;
    }
    return -1;
  }

  private scalarValue(t: string): number | undefined {
    const c = this.g.constScalar(t);
    if (c !== undefined) return c;
    return this.s.scalar(t);
  }

  /** True if t is computed only from Shape nodes and constants (no activation data). */
  private shapeDerived(t: string): boolean {
    const seen = new Set<string>();
    const stack = [t];
    while (stack.length) {
      const x = stack.pop()!;
      if (seen.has(x)) continue;
      seen.add(x);
      if (seen.size > 32) return false;
      if (this.g.isConst(x)) continue;
      const p = this.g.producer(x);
      if (!p || !SHAPE_CHAIN_OPS.has(p.opType)) return false;
      if (p.opType === 'Shape' || p.opType === 'Constant') continue;
      for (const i of p.input) if (i) stack.push(i);
    }
    return true;
  }

  /** Whether `target` is an ancestor of `from` within maxDepth producer steps. */
  private reaches(from: string, target: string, maxDepth: number): boolean {
    let frontier = [from];
    const seen = new Set<string>();
    for (let d = 0; d <= maxDepth && frontier.length; d++) {
      const next: string[] = [];
      for (const t of frontier) {
        if (t === target) return true;
        if (seen.has(t)) continue;
        seen.add(t);
        const p = this.g.producer(t);
        if (p) for (const i of p.input) if (i) next.push(i);
      }
      frontier = next;
    }
    return false;
  }

  private ancestorOps(from: string, maxDepth: number): Set<string> {
    const ops = new Set<string>();
    let frontier = [from];
    for (let d = 0; d < maxDepth && frontier.length; d++) {
      const next: string[] = [];
      for (const t of frontier) {
        const p = this.g.producer(t);
        if (!p) continue;
        ops.add(p.opType);
        for (const i of p.input) if (i) next.push(i);
      }
      frontier = next;
    }
    return ops;
  }

  /** Node names on paths from `from` up to `target` (exclusive of target's producer). */
  private nodesBetween(from: string, target: string, maxDepth: number): string[] {
    const out: string[] = [];
    const memo = new Map<string, boolean>();
    const visit = (t: string, d: number): boolean => {
      if (t === target) return true;
      if (d > maxDepth) return false;
      if (memo.has(t)) return memo.get(t)!;
      const p = this.g.producer(t);
      let hit = false;
      if (p) for (const i of p.input) if (i && visit(i, d + 1)) hit = true;
      if (hit && p) out.push(nodeName(p));
      memo.set(t, hit);
      return hit;
    };
    visit(from, 0);
    return out;
  }
}
