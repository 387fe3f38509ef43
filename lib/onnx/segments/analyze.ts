// Segment mode, step 1: where to cut one attention block. For a self- or joint-attention block the
// matcher found, this picks the tensors that leave the piece before the cut (q, k, v as [B, T, C]
// tokens, the selection tokens x, and for RoPE blocks the pre-rotation q/k with their rotated
// partners and the cos/sin tables), the nodes the cut removes (the attention core: head split,
// scale, softmax, head merge), and checks that nothing outside the core reads what it removes.
// Pure graph analysis: no onnxruntime, nothing written.
import type { NodeProto } from '../gen/onnx_pb';
import { attrInts, nodeName, type GraphIndex } from '../graph';
import type { AttentionBlock, Rope, Stream } from '../matcher';
import type { ShapeInfo, Shape } from '../shapes';

/**
 * Token layouts a cut tensor can have: [B, S, C]; [B, h, S, d]; [B, S, h, d]; [B*h, S, d].
 * Everything but BSC gets conversion nodes in the piece that produces it.
 */
export type Layout = 'BSC' | 'BNSH' | 'BSHD' | 'BMM';

export interface StreamCut {
  /** The graph tensor the cut reads (before any conversion). */
  tensor: string;
  layout: Layout;
  /**
   * com.microsoft::Attention packs q/k/v into one projection inside the node: the cut reads its
   * input and projects it in the piece (x W + b, then this stream's third of the channels).
   */
  packed?: { weight: string; bias?: string; index: number; of: number };
}

export interface RopeCut {
  /** Pre-rotation q and k (the RoPE input), their rotate-half partners rot(q), rot(k), and cos/sin. */
  q: StreamCut;
  k: StreamCut;
  qRot: StreamCut;
  kRot: StreamCut;
  /** The cos / sin operands of the rotation's Mul nodes (any shape that broadcasts to q). */
  cos: string;
  sin: string;
  /** The stream whose layout the tables broadcast against (q, or k where q reads a transposed copy). */
  via: StreamCut;
  /**
   * 'head': cos/sin are the same for every head (their head axis is 1 or absent), so they cross the
   * cut as [B, T, d]; 'channels': as [B, T, C] (per-head tables, or a layout without a head axis).
   */
  table: 'head' | 'channels';
}

export interface BlockCut {
  block: AttentionBlock;
  q: StreamCut;
  k: StreamCut;
  v: StreamCut;
  /** Selection tokens: the norm output ([B, N, C']), or [context norm ; norm] for joint blocks. */
  x?: { image: string; context?: string };
  /** Present when the cut sits before RoPE (toma rotates merged tokens at their destination's position). */
  rope?: RopeCut;
  /** Where the block applies RoPE but the cut had to sit after it (merged rotated vectors; a deviation). */
  ropeAfterCut?: string;
  /** The head-merged attention output [B, S, C] that the next piece takes as an input. */
  output: string;
  /** Nodes the cut removes (by name), all between the cut tensors and `output`. */
  removed: Set<string>;
  scale: number;
  /** Text tokens before the image tokens in q/k/v, and after them (SD3: the image comes first). */
  prefix: number;
  suffix: number;
}

export type CutAnalysis = { ok: true; cut: BlockCut } | { ok: false; reason: string };

/** Index of the graph's nodes by the matcher's names (nodeName). */
export function nodesByName(g: GraphIndex): Map<string, NodeProto> {
  const m = new Map<string, NodeProto>();
  for (const n of g.graph.node) m.set(nodeName(n), n);
  return m;
}

export function detectLayout(shape: Shape | undefined, heads: number, headDim: number, channels: number, tokens?: number): Layout | undefined {
  if (!shape) return undefined;
  if (shape.length === 3) {
    if (shape[2] === channels) return 'BSC';
    if (shape[2] === headDim && heads > 1) return 'BMM';
    return undefined;
  }
  if (shape.length === 4 && shape[3] === headDim) {
    const a = shape[1] === heads;
    const b = shape[2] === heads;
    if (a && !b) return 'BNSH';
    if (b && !a) return 'BSHD';
    if (a && b && typeof tokens === 'number') return shape[2] === tokens ? 'BNSH' : shape[1] === tokens ? 'BSHD' : undefined;
  }
  return undefined;
}

const fmtShape = (s: Shape | undefined) => (s ? `[${s.map((d) => d ?? '?').join(', ')}]` : 'unknown');

/** The data operand of a scale Mul/Div (the other is a scalar constant or a Shape-derived chain). */
function scaleDataInput(g: GraphIndex, shapes: ShapeInfo, p: NodeProto): string {
  const [a, b] = p.input;
  if (p.opType === 'Div') return a;
  const rank = (t: string) => shapes.shape(t)?.length ?? -1;
  if (g.isConst(b)) return a;
  if (g.isConst(a)) return b;
  return rank(a) >= rank(b) ? a : b;
}

/** Whether two tensors have the same known element type (a Cast between them changes nothing). */
function sameType(shapes: ShapeInfo, a: string, b: string): boolean {
  const ta = shapes.elemType(a);
  return ta !== undefined && ta === shapes.elemType(b);
}

/**
 * Walks from the tensor entering the core up through the stream's layout and scale nodes (never
 * through a Cast that changes the type: the cut keeps the core's dtype), collecting candidate cut tensors, nearest first.
 * With `stopAt`, the walk ends when it reaches that tensor (the RoPE output).
 */
function upward(g: GraphIndex, shapes: ShapeInfo, st: Stream, stopAt?: string): string[] {
  const layout = new Set(st.layoutNodes);
  const scale = new Set(st.scaleNodes);
  let t = st.coreInput;
  const out = [t];
  for (let i = 0; i < 64; i++) {
    if (t === stopAt) break;
    const p = g.producer(t);
    if (!p) break;
    const name = nodeName(p);
    if (scale.has(name)) t = scaleDataInput(g, shapes, p);
    else if (layout.has(name) && (p.opType !== 'Cast' || sameType(shapes, p.input[0], t))) t = p.input[0];
    else break;
    out.push(t);
  }
  return out;
}

function pickCut(shapes: ShapeInfo, candidates: string[], b: AttentionBlock, tokens?: number): StreamCut | undefined {
  let best: StreamCut | undefined;
  for (const t of candidates) {
    const l = detectLayout(shapes.shape(t), b.heads, b.headDim, b.channels, tokens);
    if (l === 'BSC') best = { tensor: t, layout: l };
    else if (l && (!best || best.layout !== 'BSC')) best = { tensor: t, layout: l };
  }
  return best;
}

/** Whether a table of this shape, broadcast against a 4-D `layout` tensor, is the same for every head. */
function sharedOverHeads(shape: Shape | undefined, layout: Layout): boolean {
  if (!shape || (layout !== 'BNSH' && layout !== 'BSHD')) return false;
  const axis = layout === 'BNSH' ? 1 : 2;
  const at = axis - (4 - shape.length);
  return shape.length <= 4 && (at < 0 || shape[at] === 1);
}

const TO_BSHD: Partial<Record<Layout, number[]>> = { BNSH: [0, 2, 1, 3], BSHD: [0, 1, 2, 3] };

/**
 * Whether table `a` (read by a stream in layout `to`) is table `b` (read in layout `from`) moved
 * into that layout by a Transpose, so both streams rotate each token by the same row.
 */
function sameTable(g: GraphIndex, a: string, b: string, from: Layout, to: Layout): boolean {
  if (a === b) return from === to;
  const f = TO_BSHD[from];
  const t = TO_BSHD[to];
  if (!f || !t) return false;
  // the permutation taking `from`'s axes to `to`'s: to[i] = from[perm[i]]
  const perm = t.map((axis) => f.indexOf(axis));
  const p = g.producer(a);
  if (p?.opType === 'Transpose' && p.input[0] === b) return attrInts(p, 'perm')?.join(',') === perm.join(',');
  return false;
}

/**
 * The tensor a table is made from by adding or moving unit axes only (Unsqueeze, Identity, a
 * Transpose that keeps the order of the axes longer than 1): two tables with the same such source
 * hold the same rows in the same order.
 */
function unitAxesSource(g: GraphIndex, shapes: ShapeInfo, t: string): string {
  for (let i = 0; i < 8; i++) {
    const p = g.producer(t);
    if (!p) break;
    if (p.opType === 'Unsqueeze' || p.opType === 'Identity') {
      t = p.input[0];
      continue;
    }
    if (p.opType === 'Transpose') {
      const shp = shapes.shape(p.input[0]);
      const perm = attrInts(p, 'perm');
      if (!shp || !perm) break;
      const big = perm.filter((axis) => shp[axis] !== 1);
      if (big.some((axis) => shp[axis] === undefined) || big.some((axis, j) => j > 0 && axis < big[j - 1])) break;
      t = p.input[0];
      continue;
    }
    break;
  }
  return t;
}

/** The rotated partner rot(x) of a RoPE: the operand multiplied by sin. */
export function ropeRotTensor(g: GraphIndex, rope: Rope): string | undefined {
  const add = g.producer(rope.output);
  if (!add) return undefined;
  for (const i of add.input) {
    const m = g.producer(i);
    if (m?.opType !== 'Mul') continue;
    if (m.input[0] === rope.sin) return m.input[1];
    if (m.input[1] === rope.sin) return m.input[0];
  }
  return undefined;
}

function tokenCount(b: AttentionBlock): number | undefined {
  const n = b.tokens;
  if (typeof n !== 'number') return undefined;
  // a joint block's norm output holds the image stream only; a self block's the whole sequence
  return b.kind === 'joint' && b.prefix !== undefined ? n + b.prefix + (b.suffix ?? 0) : n;
}

/** Where segment mode cuts `b`, or why it cannot. `preferPreRope`: default true. */
export function analyzeBlock(g: GraphIndex, shapes: ShapeInfo, nodes: Map<string, NodeProto>, b: AttentionBlock, preferPreRope = true): CutAnalysis {
  if (b.kind === 'cross') return { ok: false, reason: b.reason ?? 'cross-attention is never merged' };
  const blocking = b.hazards.filter((h) => h.kind !== 'baked-sequence-length');
  if (blocking.length) return { ok: false, reason: b.reason ?? blocking.map((h) => h.message).join('; ') };
  if (!b.heads || !Number.isInteger(b.headDim) || b.headDim <= 0 || !b.channels)
    return { ok: false, reason: 'the number of heads or channels could not be read from the graph' };
  if (b.scale === undefined || !Number.isFinite(b.scale) || b.scale <= 0)
    return { ok: false, reason: 'the softmax scale could not be determined from the graph' };
  const bd = b.boundaries;
  const S = tokenCount(b);
  const prefix = b.kind === 'joint' ? b.prefix : (b.prefix ?? 0);
  const suffix = b.suffix ?? 0;
  if (prefix === undefined) return { ok: false, reason: 'joint attention with a text part of unknown length' };
  if (prefix && suffix) return { ok: false, reason: `text tokens on both sides of the image tokens (${prefix} before, ${suffix} after)` };

  // RoPE: cut before the rotation when q and k carry one we can reproduce.
  let rope: RopeCut | undefined;
  let ropeAfterCut: string | undefined;
  const qr = bd.q.rope;
  const kr = bd.k.rope;
  if (qr || kr) {
    const why = ((): string | undefined => {
      if (!preferPreRope) return 'pre-rotation cut disabled';
      if (!qr || !kr) return 'RoPE on only one of q and k';
      const qRot = ropeRotTensor(g, qr);
      const kRot = ropeRotTensor(g, kr);
      if (!qRot || !kRot) return 'the rotated partner of q or k was not found';
      const qUp = upward(g, shapes, bd.q, qr.output);
      const kUp = upward(g, shapes, bd.k, kr.output);
      if (qUp[qUp.length - 1] !== qr.output || kUp[kUp.length - 1] !== kr.output)
        return 'RoPE is not the last step before the attention core';
      const lay = (t: string) => detectLayout(shapes.shape(t), b.heads, b.headDim, b.channels, S);
      const parts = [qr.input, qRot, kr.input, kRot].map((t) => ({ tensor: t, layout: lay(t) }));
      const bad = parts.find((p) => !p.layout);
      if (bad) return `cannot read the token layout of ${bad.tensor} (shape ${fmtShape(shapes.shape(bad.tensor))})`;
      if (parts[0].layout !== parts[1].layout || parts[2].layout !== parts[3].layout)
        return 'q and rot(q) (or k and rot(k)) have different layouts';
      // q and k may read the tables in their own layouts (onnxruntime's fusion moves q to
      // [B, S, h, d] and transposes its tables with it): one table, seen through both layouts
      let via: StreamCut = parts[0] as StreamCut;
      let cos = qr.cos;
      let sin = qr.sin;
      if (kr.cos !== qr.cos || kr.sin !== qr.sin) {
        const kLayout = parts[2].layout!;
        const qLayout = parts[0].layout!;
        const shared = (a: string, b: string) =>
          sharedOverHeads(shapes.shape(a), qLayout) && sharedOverHeads(shapes.shape(b), kLayout) && unitAxesSource(g, shapes, a) === unitAxesSource(g, shapes, b);
        const same = (a: string, b: string) => sameTable(g, a, b, kLayout, qLayout) || shared(a, b);
        if (!(same(qr.cos, kr.cos) && same(qr.sin, kr.sin))) return 'q and k are rotated with different cos/sin tables';
        via = parts[2] as StreamCut;
        cos = kr.cos;
        sin = kr.sin;
      }
      rope = {
        q: parts[0] as StreamCut,
        qRot: parts[1] as StreamCut,
        k: parts[2] as StreamCut,
        kRot: parts[3] as StreamCut,
        cos,
        sin,
        via,
        table: sharedOverHeads(shapes.shape(cos), via.layout) && sharedOverHeads(shapes.shape(sin), via.layout) ? 'head' : 'channels',
      };
      return undefined;
    })();
    if (why) ropeAfterCut = why;
  }

  const cutOf = (st: Stream, label: string): StreamCut | string => {
    const c = pickCut(shapes, upward(g, shapes, st), b, S);
    if (!c) return `${label}: no tensor between its projection and the attention core has a token layout toma reads (core input ${st.coreInput}, shape ${fmtShape(shapes.shape(st.coreInput))})`;
    return c;
  };
  const packedCut = (st: Stream): StreamCut | string => {
    const fused = nodes.get(bd.core.fused ?? '');
    const pr = st.projections[0];
    if (!fused || !pr?.packed) return 'the packed Attention node has no projection to cut at';
    const attrs = new Set(fused.attribute.map((a) => a.name));
    for (const a of ['qkv_hidden_sizes', 'unidirectional', 'past_present_share_buffer', 'do_rotary'])
      if (attrs.has(a) && !(a === 'unidirectional' && fused.attribute.find((x) => x.name === a)?.i === 0n))
        return `the com.microsoft::Attention node ${bd.core.fused} sets ${a}, which segment mode does not reproduce`;
    if (fused.input.slice(3).some((t) => t)) return `the com.microsoft::Attention node ${bd.core.fused} has a mask, past state or attention bias`;
    return { tensor: fused.input[0], layout: 'BSC', packed: { weight: fused.input[1], bias: fused.input[2] || undefined, index: pr.packed.index, of: pr.packed.of } };
  };
  const isPacked = b.form === 'Attention';
  const q = rope ? rope.q : isPacked ? packedCut(bd.q) : cutOf(bd.q, 'q');
  const k = rope ? rope.k : isPacked ? packedCut(bd.k) : cutOf(bd.k, 'k');
  const v = isPacked ? packedCut(bd.v) : cutOf(bd.v, 'v');
  for (const c of [q, k, v]) if (typeof c === 'string') return { ok: false, reason: c };

  // The head-merged output: [B, S, C].
  const output = bd.headMerge.output;
  if (detectLayout(shapes.shape(output), b.heads, b.headDim, b.channels, S) !== 'BSC')
    return { ok: false, reason: `the head-merged attention output ${output} is not [B, S, ${b.channels}] (shape ${fmtShape(shapes.shape(output))})` };

  const cutSet = new Set([(q as StreamCut).tensor, (k as StreamCut).tensor, (v as StreamCut).tensor]);
  if (rope) {
    cutSet.add(rope.qRot.tensor);
    cutSet.add(rope.kRot.tensor);
  }
  const removed = coreBetween(g, cutSet, output);
  const check = validateRemoved(g, nodes, removed, output, b);
  if (check) return { ok: false, reason: check };

  // Selection tokens.
  let x: BlockCut['x'];
  const imgShape = shapes.shape(bd.normOutput);
  if (imgShape?.length === 3 && !removed.has(g.producer(bd.normOutput) ? nodeName(g.producer(bd.normOutput)!) : '')) {
    if (b.kind === 'joint' && prefix + suffix > 0) {
      // [context ; image], text first whichever side the graph puts it (the cut moves SD3's text in front)
      const ctx = bd.contextNormOutput;
      const ctxShape = ctx ? shapes.shape(ctx) : undefined;
      if (ctx && ctxShape?.length === 3 && ctxShape[2] === imgShape[2]) x = { image: bd.normOutput, context: ctx };
    } else {
      x = { image: bd.normOutput };
    }
  }

  return {
    ok: true,
    cut: {
      block: b,
      q: q as StreamCut,
      k: k as StreamCut,
      v: v as StreamCut,
      x,
      rope,
      ropeAfterCut,
      output,
      removed,
      scale: b.scale,
      prefix,
      suffix,
    },
  };
}

/** Nodes downstream of the cut tensors and upstream of the output: the part of the block the cut replaces. */
function coreBetween(g: GraphIndex, cutSet: Set<string>, output: string): Set<string> {
  // forward from the cut tensors, not past the output
  const down = new Set<string>();
  const fq = [...cutSet];
  const seenT = new Set<string>(fq);
  while (fq.length) {
    const t = fq.pop()!;
    if (t === output) continue;
    for (const c of g.consumersOf(t)) {
      const n = nodeName(c);
      if (down.has(n)) continue;
      down.add(n);
      for (const o of c.output) if (o && !seenT.has(o)) {
        seenT.add(o);
        fq.push(o);
      }
    }
  }
  // backward from the output, not above the cut tensors
  const up = new Set<string>();
  const bq = [output];
  const seenB = new Set<string>(bq);
  while (bq.length) {
    const t = bq.pop()!;
    if (cutSet.has(t)) continue;
    const p = g.producer(t);
    if (!p) continue;
    const n = nodeName(p);
    if (up.has(n)) continue;
    up.add(n);
    for (const i of p.input) if (i && !seenB.has(i)) {
      seenB.add(i);
      bq.push(i);
    }
  }
  const r = new Set<string>();
  for (const n of down) if (up.has(n)) r.add(n);
  return r;
}

function validateRemoved(g: GraphIndex, nodes: Map<string, NodeProto>, removed: Set<string>, output: string, b: AttentionBlock): string | undefined {
  const prod = g.producer(output);
  if (!prod || !removed.has(nodeName(prod))) return `the attention output ${output} is not computed from the cut q, k, v`;
  for (const name of removed) {
    const n = nodes.get(name);
    if (!n) continue;
    for (const t of n.output) {
      if (!t || t === output) continue;
      if (g.outputs.has(t)) return `${t} inside the attention core is a graph output`;
      for (const c of g.consumersOf(t)) {
        if (!removed.has(nodeName(c))) return `${t} inside the attention core is also read by ${nodeName(c)} outside it`;
      }
    }
  }
  const core = b.boundaries.core;
  for (const n of core.nodes) if (!removed.has(n)) return `the attention core node ${n} is not between the cut tensors and the output`;
  for (const st of [b.boundaries.q, b.boundaries.k]) {
    for (const s of st.scaleNodes)
      if (!removed.has(s)) return `the softmax scale node ${s} sits upstream of the cut; the scale cannot be moved into toma`;
  }
  for (const h of b.hazards)
    if (h.kind === 'baked-sequence-length' && h.node && !removed.has(h.node))
      return `${h.message} (outside the attention core, so merging cannot avoid it)`;
  return undefined;
}
