// Segment mode, step 2: cutting the graph into pieces. Given the cuts chosen for the patched blocks
// (analyze.ts), this removes each block's attention core, adds the few nodes that turn the cut
// tensors into [B, T, C] tokens, assigns every node to a piece (stage) and writes each piece as a
// GraphProto whose inputs are graph inputs, earlier pieces' outputs and the attention outputs toma
// computes between pieces. Pure graph work: no onnxruntime here.
//
// Stages: a node's stage is the largest stage of its inputs; the attention output of cut i is
// available at (stage of cut i's tensors) + 1. Nodes that depend only on graph inputs and
// initializers (timestep MLPs, text-side projections, shape arithmetic on inputs) move to the first
// stage that reads them, so their results do not cross pieces. One cut per patched block, so a stack
// of n patched blocks runs as n + 1 pieces; dense and cross-attention blocks stay inside pieces.
import { create } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  NodeProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  ValueInfoProtoSchema,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from '../gen/onnx_pb';
import { nodeName, type GraphIndex } from '../graph';
import type { Shape } from '../shapes';
import type { BlockCut, Layout, StreamCut } from './analyze';

/** What the JavaScript side does at one cut, with the names of the tensors it reads and writes. */
export interface CutSpec {
  index: number;
  block: string;
  kind: 'self' | 'joint';
  heads: number;
  channels: number;
  scale: number;
  prefix: number;
  /** Text tokens after the image tokens: the cut moves them in front for toma and back after. */
  suffix: number;
  /** [B, T, C] tokens after conversion. RoPE cuts read `rope.packed` instead of q/k/v. */
  q: string;
  k: string;
  v: string;
  /** Selection tokens [B, P + N, C'] (or [B, N, C'] without prefix). */
  x?: string;
  /**
   * RoPE cuts: [q | rot(q) | k | rot(k) | v] along channels ([B, T, 5C]) and cos/sin as [B, T, d]
   * (the same for every head) or [B, T, C].
   */
  rope?: { packed: string; cos: string; sin: string };
  /** The head-merged attention output that later pieces read. */
  output: string;
  /** Every tensor this cut reads from the pieces. */
  needs: string[];
  /** The piece after which this cut runs. */
  stage: number;
}

export interface PieceSpec {
  index: number;
  nodes: NodeProto[];
  initializers: TensorProto[];
  sparseInitializers: GraphProto['sparseInitializer'];
  /** Graph inputs this piece reads (their original ValueInfo). */
  graphInputs: ValueInfoProto[];
  /** Graph inputs that are backed by an initializer (optional feeds). */
  optionalInputs: Set<string>;
  /** Tensors from earlier pieces or from toma (typed when the piece's session is created). */
  crossInputs: string[];
  /** Tensors this piece hands on, in order (graph outputs keep their ValueInfo). */
  outputs: string[];
  graphOutputs: Map<string, ValueInfoProto>;
  valueInfo: ValueInfoProto[];
}

export interface Pieces {
  pieces: PieceSpec[];
  cuts: CutSpec[];
}

// ---------------------------------------------------------------------------------------------
// node builders

class Builder {
  readonly nodes: NodeProto[] = [];
  readonly inits = new Map<string, TensorProto>();
  private counter = 0;
  constructor(readonly prefix: string) {}

  name(tag: string): string {
    return `${this.prefix}/${tag}_${this.counter++}`;
  }

  ints(values: number[]): string {
    const name = `toma::const::i64[${values.join(',')}]`;
    if (!this.inits.has(name)) {
      this.inits.set(
        name,
        create(TensorProtoSchema, { name, dims: [BigInt(values.length)], dataType: TensorProto_DataType.INT64, int64Data: values.map(BigInt) }),
      );
    }
    return name;
  }

  node(opType: string, inputs: string[], outputName: string, attrs: Record<string, number | number[]> = {}): string {
    const attribute = Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v)
        ? create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: v.map(BigInt) })
        : create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(v) }),
    );
    const n = create(NodeProtoSchema, { name: this.name(opType), opType, input: inputs, output: [outputName], attribute });
    this.nodes.push(n);
    return outputName;
  }

  /** [B, S, C] tokens from a cut tensor in `layout`; returns the tensor's name. */
  toBsc(c: StreamCut, heads: number, headDim: number, out: string, shared?: Map<string, string>): string {
    if (c.packed) {
      // x W (+ b) once per packed projection, then this stream's channels
      const key = `${c.tensor}|${c.packed.weight}|${c.packed.bias ?? ''}`;
      let qkv = shared?.get(key);
      if (!qkv) {
        const mm = this.node('MatMul', [c.tensor, c.packed.weight], `${out}::qkv_mm`);
        qkv = c.packed.bias ? this.node('Add', [mm, c.packed.bias], `${out}::qkv`) : mm;
        shared?.set(key, qkv);
      }
      const C = heads * headDim;
      const from = c.packed.index * C;
      return this.node('Slice', [qkv, this.ints([from]), this.ints([from + C]), this.ints([2])], out);
    }
    return this.convert(c.tensor, c.layout, heads, headDim, out);
  }

  convert(t: string, layout: Layout, heads: number, headDim: number, out: string): string {
    switch (layout) {
      case 'BSC':
        return t;
      case 'BSHD':
        return this.node('Reshape', [t, this.ints([0, 0, -1])], out);
      case 'BNSH': {
        const tr = this.node('Transpose', [t], `${out}::bshd`, { perm: [0, 2, 1, 3] });
        return this.node('Reshape', [tr, this.ints([0, 0, -1])], out);
      }
      case 'BMM': {
        // [B*h, S, d] (batch-major, as diffusers' head_to_batch_dim) -> [B, h, S, d] -> [B, S, C]
        const shp = this.node('Shape', [t], `${out}::shape`);
        const s = this.node('Slice', [shp, this.ints([1]), this.ints([2]), this.ints([0])], `${out}::S`);
        const target = this.node('Concat', [this.ints([-1]), this.ints([heads]), s, this.ints([headDim])], `${out}::target`, { axis: 0 });
        const r = this.node('Reshape', [t, target], `${out}::bnsh`);
        const tr = this.node('Transpose', [r], `${out}::bshd`, { perm: [0, 2, 1, 3] });
        return this.node('Reshape', [tr, this.ints([0, 0, -1])], out);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** Outer-scope names a node's subgraphs read (If / Loop / Scan bodies). */
function implicitInputs(n: NodeProto): string[] {
  const out = new Set<string>();
  const visit = (g: GraphProto, outer: Set<string>) => {
    const defined = new Set<string>(outer);
    for (const i of g.input) defined.add(i.name);
    for (const i of g.initializer) defined.add(i.name);
    for (const i of g.sparseInitializer) if (i.values) defined.add(i.values.name);
    for (const sn of g.node) {
      for (const i of sn.input) if (i && !defined.has(i)) out.add(i);
      for (const a of sn.attribute) {
        if (a.g) visit(a.g, defined);
        for (const sg of a.graphs) visit(sg, defined);
      }
      for (const o of sn.output) if (o) defined.add(o);
    }
  };
  for (const a of n.attribute) {
    if (a.g) visit(a.g, new Set());
    for (const sg of a.graphs) visit(sg, new Set());
  }
  return [...out];
}

/** Cuts the graph of `g` at `cuts` (in graph order). */
export function buildPieces(g: GraphIndex, cuts: BlockCut[], shapeOf?: (tensor: string) => Shape | undefined): Pieces {
  const graph = g.graph;
  const removed = new Set<string>();
  for (const c of cuts) for (const n of c.removed) removed.add(n);

  // 1. conversion nodes per cut, anchored after the producers of their inputs
  const specs: CutSpec[] = [];
  const builders: Builder[] = [];
  const converted = new Map<string, string>(); // key -> tensor name (shared conversions, e.g. one cos table)
  cuts.forEach((c, index) => {
    const b = c.block;
    const bl = new Builder(`toma/cut${index}`);
    const base = `toma::cut${index}`;
    const bsc = (s: StreamCut, label: string) => {
      const key = `${s.tensor}|${s.layout}|${b.heads}|${b.headDim}|${s.packed ? `${s.packed.weight}|${s.packed.index}` : ''}`;
      const hit = converted.get(key);
      if (hit) return hit;
      const out = bl.toBsc(s, b.heads, b.headDim, `${base}::${label}`, converted);
      converted.set(key, out);
      return out;
    };
    let q: string, k: string, v: string;
    let rope: CutSpec['rope'];
    if (c.rope) {
      const r = c.rope;
      q = bsc(r.q, 'q');
      const qRot = bsc(r.qRot, 'q_rot');
      k = bsc(r.k, 'k');
      const kRot = bsc(r.kRot, 'k_rot');
      v = bsc(c.v, 'v');
      const packed = bl.node('Concat', [q, qRot, k, kRot, v], `${base}::qkv_rope`, { axis: 2 });
      // cos/sin broadcast to q's tokens: one table per cos tensor and q shape, shared by blocks
      // the tables broadcast against the stream that reads them (r.via: q, or k)
      const via = r.via;
      const viaShape = shapeOf?.(via.tensor);
      const shapeKey = viaShape && viaShape.every((d) => d !== undefined) ? JSON.stringify(viaShape) : via.tensor;
      const table = (t: string, label: string) => {
        const key = `${t}|table|${r.table}|${via.layout}|${b.heads}|${b.headDim}|${shapeKey}`;
        const hit = converted.get(key);
        if (hit) return hit;
        const shp = bl.node('Shape', [via.tensor], `${base}::${label}::shape`);
        let out: string;
        if (r.table === 'head') {
          // [B, 1, S, d] (BNSH) or [B, S, 1, d] (BSHD), then [B, S, d]
          const lead = via.layout === 'BNSH' ? bl.node('Slice', [shp, bl.ints([0]), bl.ints([1]), bl.ints([0])], `${base}::${label}::B`) : bl.node('Slice', [shp, bl.ints([0]), bl.ints([2]), bl.ints([0])], `${base}::${label}::BS`);
          const tail = via.layout === 'BNSH' ? bl.node('Slice', [shp, bl.ints([2]), bl.ints([4]), bl.ints([0])], `${base}::${label}::Sd`) : bl.ints([b.headDim]);
          const target = bl.node('Concat', [lead, bl.ints([1]), tail], `${base}::${label}::target`, { axis: 0 });
          const ex = bl.node('Expand', [t, target], `${base}::${label}::full`);
          out = bl.node('Reshape', [ex, bl.ints(via.layout === 'BNSH' ? [0, -1, b.headDim] : [0, 0, -1])], `${base}::${label}`);
        } else {
          const ex = bl.node('Expand', [t, shp], `${base}::${label}::full`);
          out = bl.convert(ex, via.layout, b.heads, b.headDim, `${base}::${label}`);
        }
        converted.set(key, out);
        return out;
      };
      rope = { packed, cos: table(r.cos, 'cos'), sin: table(r.sin, 'sin') };
    } else {
      q = bsc(c.q, 'q');
      k = bsc(c.k, 'k');
      v = bsc(c.v, 'v');
    }
    let x: string | undefined;
    if (c.x) x = c.x.context ? bl.node('Concat', [c.x.context, c.x.image], `${base}::x`, { axis: 1 }) : c.x.image;
    const needs = rope ? [rope.packed, rope.cos, rope.sin] : [q, k, v];
    if (x && !needs.includes(x)) needs.push(x);
    specs.push({
      index,
      block: b.name,
      kind: b.kind === 'joint' ? 'joint' : 'self',
      heads: b.heads,
      channels: b.channels,
      scale: c.scale,
      prefix: c.prefix,
      suffix: c.suffix,
      q,
      k,
      v,
      x,
      rope,
      output: c.output,
      needs,
      stage: -1,
    });
    builders.push(bl);
  });

  // 2. the node list: original order without the removed cores, conversions after their inputs
  const position = new Map<string, number>();
  graph.node.forEach((n, i) => n.output.forEach((o) => o && position.set(o, i)));
  const after = new Map<number, NodeProto[]>();
  const inits = new Map<string, TensorProto>();
  for (const bl of builders) {
    for (const [k, t] of bl.inits) inits.set(k, t);
    for (const n of bl.nodes) {
      let anchor = -1;
      for (const i of n.input) anchor = Math.max(anchor, position.get(i) ?? -1);
      for (const o of n.output) position.set(o, anchor);
      const list = after.get(anchor);
      if (list) list.push(n);
      else after.set(anchor, [n]);
    }
  }
  const list: NodeProto[] = [...(after.get(-1) ?? [])];
  graph.node.forEach((n, i) => {
    if (!removed.has(nodeName(n))) list.push(n);
    const extra = after.get(i);
    if (extra) list.push(...extra);
  });

  // 3. dead code: keep what the graph outputs and the cuts need
  const deps = new Map<NodeProto, string[]>();
  for (const n of list) deps.set(n, [...n.input.filter(Boolean), ...implicitInputs(n)]);
  const producer = new Map<string, NodeProto>();
  for (const n of list) for (const o of n.output) if (o) producer.set(o, n);
  const cutOfOutput = new Map<string, CutSpec>();
  for (const s of specs) cutOfOutput.set(s.output, s);
  const liveT = new Set<string>([...g.outputs]);
  for (const s of specs) for (const t of s.needs) liveT.add(t);
  const liveN = new Set<NodeProto>();
  for (let i = list.length - 1; i >= 0; i--) {
    const n = list[i];
    if (!n.output.some((o) => o && liveT.has(o))) continue;
    liveN.add(n);
    for (const t of deps.get(n)!) liveT.add(t);
  }
  // a cut's output is live when read; its needs are then live too (already added above)
  const nodes = list.filter((n) => liveN.has(n));

  // 4. stages (ASAP), then input-only nodes as late as their first reader
  const stage = new Map<NodeProto, number>();
  const cutStage = (s: CutSpec): number => {
    if (s.stage >= 0) return s.stage;
    let st = 0;
    for (const t of s.needs) st = Math.max(st, tensorStage(t));
    s.stage = st;
    return st;
  };
  const tensorStage = (t: string): number => {
    const c = cutOfOutput.get(t);
    if (c) return cutStage(c) + 1;
    const p = producer.get(t);
    if (!p || !liveN.has(p)) return 0;
    const s = stage.get(p);
    if (s === undefined) throw new Error(`segments: ${t} is read before it is produced (graph not topologically sorted)`);
    return s;
  };
  const inputOnly = new Set<NodeProto>();
  for (const n of nodes) {
    let s = 0;
    let pure = true;
    for (const t of deps.get(n)!) {
      s = Math.max(s, tensorStage(t));
      if (cutOfOutput.has(t)) pure = false;
      const p = producer.get(t);
      if (p && liveN.has(p) && !inputOnly.has(p)) pure = false;
    }
    stage.set(n, s);
    if (pure) inputOnly.add(n);
  }
  for (const s of specs) cutStage(s);
  const readers = new Map<string, NodeProto[]>();
  for (const n of nodes) for (const t of deps.get(n)!) {
    const r = readers.get(t);
    if (r) r.push(n);
    else readers.set(t, [n]);
  }
  const cutReaders = new Map<string, number>();
  for (const s of specs) for (const t of s.needs) cutReaders.set(t, Math.min(cutReaders.get(t) ?? Infinity, s.stage));
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    if (!inputOnly.has(n)) continue;
    let s = Infinity;
    let isGraphOutput = false;
    for (const o of n.output) {
      if (!o) continue;
      if (g.outputs.has(o)) isGraphOutput = true;
      for (const r of readers.get(o) ?? []) s = Math.min(s, stage.get(r)!);
      const c = cutReaders.get(o);
      if (c !== undefined) s = Math.min(s, c);
    }
    if (isGraphOutput) s = Math.min(s, stage.get(n)!);
    if (Number.isFinite(s)) stage.set(n, s);
  }

  // 5. pieces
  let count = 1;
  for (const n of nodes) count = Math.max(count, stage.get(n)! + 1);
  for (const s of specs) count = Math.max(count, s.stage + 2);
  const pieces: PieceSpec[] = [];
  const producedIn = new Map<string, number>();
  for (const n of nodes) for (const o of n.output) if (o) producedIn.set(o, stage.get(n)!);
  const laterReaders = new Map<string, number>(); // tensor -> last stage that reads it
  for (const n of nodes) for (const t of deps.get(n)!) laterReaders.set(t, Math.max(laterReaders.get(t) ?? -1, stage.get(n)!));
  for (const s of specs) for (const t of s.needs) laterReaders.set(t, Math.max(laterReaders.get(t) ?? -1, s.stage));
  const graphInputs = new Map(graph.input.map((v) => [v.name, v]));
  const sparse = new Map<string, (typeof graph.sparseInitializer)[number]>();
  for (const sp of graph.sparseInitializer) if (sp.values) sparse.set(sp.values.name, sp);
  const outputsInfo = new Map(graph.output.map((v) => [v.name, v]));
  const valueInfo = new Map(graph.valueInfo.map((v) => [v.name, v]));

  for (let p = 0; p < count; p++) {
    const pn = nodes.filter((n) => stage.get(n) === p);
    const produced = new Set<string>();
    for (const n of pn) for (const o of n.output) if (o) produced.add(o);
    const used = new Set<string>();
    for (const n of pn) for (const t of deps.get(n)!) used.add(t);
    const initializers: TensorProto[] = [];
    const sparseInits: typeof graph.sparseInitializer = [];
    const gi: ValueInfoProto[] = [];
    const optional = new Set<string>();
    const cross: string[] = [];
    for (const t of used) {
      if (produced.has(t)) continue;
      const init = g.initializers.get(t) ?? inits.get(t);
      if (init) {
        initializers.push(init);
        if (graphInputs.has(t)) {
          gi.push(graphInputs.get(t)!);
          optional.add(t);
        }
        continue;
      }
      const sp = sparse.get(t);
      if (sp) {
        sparseInits.push(sp);
        continue;
      }
      if (graphInputs.has(t) && !producedIn.has(t) && !cutOfOutput.has(t)) {
        gi.push(graphInputs.get(t)!);
        continue;
      }
      cross.push(t);
    }
    const outputs: string[] = [];
    for (const n of pn)
      for (const o of n.output) {
        if (!o) continue;
        if (g.outputs.has(o) || (laterReaders.get(o) ?? -1) > p || cutReaders.has(o)) outputs.push(o);
      }
    const vi: ValueInfoProto[] = [];
    for (const t of produced) {
      const v = valueInfo.get(t);
      if (v && !outputs.includes(t)) vi.push(v);
    }
    pieces.push({
      index: p,
      nodes: pn,
      initializers,
      sparseInitializers: sparseInits,
      graphInputs: gi,
      optionalInputs: optional,
      crossInputs: cross,
      outputs,
      graphOutputs: new Map(outputs.filter((o) => outputsInfo.has(o)).map((o) => [o, outputsInfo.get(o)!])),
      valueInfo: vi,
    });
  }
  // graph outputs that no node produces (a graph input passed through) stay with the runtime
  return { pieces, cuts: specs };
}

/** A piece's GraphProto, with its crossing inputs typed by `types` (name -> ValueInfo). */
export function pieceGraph(original: GraphProto, piece: PieceSpec, types: Map<string, ValueInfoProto>): GraphProto {
  const inputs: ValueInfoProto[] = [...piece.graphInputs];
  for (const t of piece.crossInputs) {
    const v = types.get(t);
    if (!v) throw new Error(`segments: piece ${piece.index} reads ${t}, whose type is not known yet`);
    inputs.push(v);
  }
  const outputs = piece.outputs.map((o) => piece.graphOutputs.get(o) ?? create(ValueInfoProtoSchema, { name: o }));
  return create(GraphProtoSchema, {
    name: `${original.name || 'graph'}_toma_piece${piece.index}`,
    node: piece.nodes,
    initializer: piece.initializers,
    sparseInitializer: piece.sparseInitializers,
    input: inputs,
    output: outputs,
    valueInfo: piece.valueInfo,
  });
}
