// The standard-ops rewrite of a whole model (DESIGN "The external runtime", mechanism 1): every
// patchable self- or joint-attention block gets ToMA in standard ONNX operators around it.
//
//   norm output x ──merge──> x_m ──> to_q/to_k/to_v ... attention ... to_out (+bias) ──unmerge──> (residual)
//
// Merging the block input is exact (SPEC 5: merge commutes with the linear projections), so the
// projections, the attention and to_out all run on P + K tokens. Joint (Flux double-stream) blocks
// merge only the image stream: the text stream joins in front unmerged, and RoPE takes the
// destinations' rows of cos/sin (a merged token takes its destination's rotary position).
// Cross-attention is left as exported.
//
// Plans: one per block group (blocks with the same grid and channels, or options.group). The
// group's first block computes it under an `If` on the control input `toma_recompute`
// (2 select + weigh, 1 keep the destinations and re-weigh, 0 reuse); the plan leaves the graph as
// outputs toma_plan_<g>_dest_out / _A_out and comes back on the next step as inputs
// toma_plan_<g>_dest / _A, which the session threads (session.ts). The other blocks of the group
// read the group's plan.
import { performance } from 'node:perf_hooks';
import type { GraphProto, NodeProto } from '../gen/onnx_pb';
import { GraphIndex, nodeName } from '../graph';
import { matchAttention, reportedKind, type AttentionBlock, type AttentionKind } from '../matcher';
import { provablyZero } from '../zeros';
import { canonicalizeRope } from '../canonical';
import type { OnnxModel } from '../model';
import { ShapeInfo, type Dim } from '../shapes';
import type { SessionOptions } from '../session-types';
import type { Bind } from '../specialize';
import { checkRatio, resolveOptions, type ProcessorOptions, type ResolvedOptions } from '../../processor/options';
import type { Region } from '../../types';
import { DT, GraphBuilder, Names, nodeReads, topoSort, valueInfo, type ElemType } from './builder';
import { checkGrid, regionLayout } from './layout';
import { resolveGrid, type GridHints, type ResolvedGrid } from '../grid';
import { defaultDense, type PolicyBlock } from '../payoff';
import { DEFAULT_REGION, RECOMPUTE, TomaEmitter, tomaSpec, type GreedyForm, type MergeMatrices, type PlanTensors, type TomaSpec } from './toma-graph';

/** Plan inputs of the patched graph: 'required' (fed by the caller every run) or 'none'. */
export type PlanIOMode = 'required' | 'none';

export type PatchOptions = SessionOptions & {
  /** Greedy selection as unrolled nodes or a Loop; 'auto' unrolls up to unrollLimit steps (32). */
  greedy?: GreedyForm | 'auto';
  unrollLimit?: number;
  /** Float type of the plan computation; 'float64' (default) matches the native plans exactly. */
  precision?: 'float64' | 'float32';
  /**
   * 'required' (default): the graph gets the inputs toma_recompute and toma_plan_<g>_dest / _A
   * and the outputs toma_plan_<g>_dest_out / _A_out, fed and read by the caller (the session does
   * it). 'none': no plan inputs or outputs; every run selects a fresh plan, and the model takes
   * the original feeds alone. (Defaults in the file, as initializers named like the inputs, would
   * not help: onnxruntime-node and -web drop feeds for such inputs.)
   */
  planIO?: PlanIOMode;
  /** Throw when no attention block can be patched (default: report it and keep the model as is). */
  requirePatched?: boolean;
  /** RoPE handling; standard-ops always rotates a merged token with its destination's position. */
  rope?: 'destination';
  /** Accepted for option compatibility with the segments mode; unused here. */
  tmpDir?: string;
  onWarning?: (message: string) => void;
};

export interface PatchedBlock {
  name: string;
  kind: AttentionKind;
  patched: boolean;
  /** Why the block runs as exported (cross-attention, dense, a hazard that cannot be rewritten, ...). */
  reason?: string;
  dense?: boolean;
  /** The block would be patched, but its token grid is unknown: pass options.grid. */
  needsGrid?: boolean;
  /** Plan group id (g0, g1, ...) of a patched block. */
  group?: string;
  grid?: [number, number];
  /** Tokens in front of the merged image tokens in the merged tensor (single-stream text). */
  prefix?: number;
  /** Image tokens before and after merging. */
  tokens?: number;
  merged?: number;
  ratio?: number;
  /** Shape constants rewritten to -1/0 (SPEC: sequence lengths baked into Reshape targets). */
  rewrites?: Array<{ node: string; index: number; from: number; to: number }>;
  /** RoPE tables gathered at the destinations. */
  rope?: Array<{ cos: string; sin: string; prefixRows: number }>;
}

export interface PlanTensorInfo {
  name: string;
  role: 'control' | 'destinations' | 'weights';
  dtype: 'int64' | 'float32';
  shape: Array<number | string>;
  group?: string;
  /** What to feed on a step that selects a fresh plan. */
  onSelect?: string;
}

export interface PatchGroup {
  id: string;
  /** Group name (options.group or `${H}x${W}:${C}`), ratio, prefix and grid. */
  key: string;
  kind: AttentionKind;
  grid: [number, number];
  channels: number;
  ratio: number;
  blocks: string[];
  /** Image tokens, merged tokens, regions, padded region size, destination slots per region. */
  N: number;
  K: number;
  regions: number;
  regionSize: number;
  slots: number;
  greedy?: GreedyForm;
  /** Plan tensors crossing steps (absent at ratio 0: the identity plan is a constant). */
  inputs?: { destinations: string; weights: string };
  outputs?: { destinations: string; weights: string };
}

export interface PatchReport {
  mode: 'standard-ops';
  input: string;
  /** Written file (patchModel), absent for in-memory patches. */
  output?: string;
  bytes?: number;
  /** Default-domain opset of the model, which every added node uses (all exist since opset 13). */
  opset: number;
  ratio: SessionOptions['ratio'];
  region: Region;
  tau: number;
  precision: 'float64' | 'float32';
  planIO: PlanIOMode;
  blocks: PatchedBlock[];
  groups: PatchGroup[];
  /** The control input (absent when no plan crosses steps). */
  control?: string;
  /** Inputs and outputs added for the plans; users of a TomaSession never see them. */
  inputs: PlanTensorInfo[];
  outputs: PlanTensorInfo[];
  schedule: { destinationInterval: number; weightInterval: number };
  nodesAdded: number;
  /** Operator types added (default domain only). */
  opsUsed: string[];
  ms: number;
}

const EXTRA_KEYS = new Set(['mode', 'grid', 'greedy', 'unrollLimit', 'precision', 'planIO', 'requirePatched', 'rope', 'tmpDir', 'onWarning', 'inputShapes', 'externalData']);
export const CONTROL_INPUT = 'toma_recompute';

/** Options split into the processor's (validated by resolveOptions) and the patch's own. */
export function resolvePatchOptions(options: PatchOptions): { proc: ResolvedOptions; o: PatchOptions } {
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new TypeError(`options must be an object { ratio, ... }, got ${String(options)}`);
  const procOpts: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) if (!EXTRA_KEYS.has(k)) procOpts[k] = v;
  const proc = resolveOptions(procOpts as unknown as ProcessorOptions);
  if (options.mode !== undefined && options.mode !== 'standard-ops')
    throw new RangeError(
      `options.mode must be 'standard-ops' here (a patched model file is a standard-ops model; the segments mode needs no file: ` +
        `toma.onnx.createSession(path, { mode: 'segments' })), got ${String(options.mode)}`,
    );
  if (proc.method !== 'toma')
    throw new RangeError(`options.method = '${proc.method}' is not available in standard-ops mode (ToMA only); use mode 'segments'`);
  if (typeof proc.ratio === 'object')
    throw new RangeError(
      'options.ratio = { similarity } (adaptive) is not available in standard-ops mode: the destination count must be fixed ' +
        'when the graph is built; pass a number, or use mode \'segments\'',
    );
  if (options.grid !== undefined) checkGrid(options.grid, 'options.grid');
  if (options.greedy !== undefined && !['auto', 'unrolled', 'loop'].includes(options.greedy))
    throw new RangeError(`options.greedy must be 'auto', 'unrolled' or 'loop', got ${String(options.greedy)}`);
  if (options.unrollLimit !== undefined && !(Number.isInteger(options.unrollLimit) && options.unrollLimit >= 0))
    throw new RangeError(`options.unrollLimit must be an integer >= 0, got ${String(options.unrollLimit)}`);
  if (options.precision !== undefined && options.precision !== 'float64' && options.precision !== 'float32')
    throw new RangeError(`options.precision must be 'float64' or 'float32', got ${String(options.precision)}`);
  if (options.rope !== undefined && options.rope !== 'destination')
    throw new RangeError(
      `options.rope must be 'destination' in standard-ops mode (a merged token takes its destination's rotary position), got ${String(options.rope)}`,
    );
  if (options.planIO !== undefined && !['required', 'none'].includes(options.planIO))
    throw new RangeError(`options.planIO must be 'required' or 'none', got ${String(options.planIO)}`);
  return { proc, o: options };
}

// ---------------------------------------------------------------------------------------------
// per-block analysis

interface BlockWork {
  block: AttentionBlock;
  report: PatchedBlock;
  grid: [number, number];
  ratio: number;
  groupName: string;
  /** Prefix tokens inside the merged tensor (0 for joint blocks: the text is another stream). */
  P: number;
  dtype: ElemType;
  x0: string;
  unmergeAt: string;
  spanConsumers: NodeProto[];
  /** Tensors produced inside the merged span (their value_info no longer holds). */
  spanTensors: Set<string>;
  rewrites: Array<{ node: NodeProto; index: number; from: number; to: number }>;
  /** Slice bounds (input index 1 = starts, 2 = ends) on the token axis rewritten to merged counts. */
  sliceRewrites: Array<{ node: NodeProto; index: number; from: number; to: number }>;
  rope: Array<{ cos: string; sin: string; prefixRows: number; rank: number; headAxis: number; muls: NodeProto[]; cosShape: number[] }>;
  firstIndex: number;
  unmergeIndex: number;
}

const SHAPE_INPUTS: Record<string, number> = { Reshape: 1, Expand: 1, Tile: 1, ConstantOfShape: 0 };
const FLOAT_TYPES = new Set<number>([DT.FLOAT, DT.FLOAT16, DT.BFLOAT16, DT.DOUBLE]);

class Analyser {
  readonly index = new Map<NodeProto, number>();
  readonly byName = new Map<string, NodeProto>();
  constructor(
    readonly g: GraphIndex,
    readonly shapes: ShapeInfo,
  ) {
    g.graph.node.forEach((n, i) => {
      this.index.set(n, i);
      this.byName.set(nodeName(n), n);
    });
  }

  /** Nodes on paths from `x0` to the stop tensors (backward walk from the stops, not past x0). */
  ancestors(stops: string[], x0: string): Set<NodeProto> {
    const out = new Set<NodeProto>();
    const seen = new Set<string>();
    const stack = [...stops];
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t) || t === x0) continue;
      seen.add(t);
      const p = this.g.producer(t);
      if (!p || out.has(p)) continue;
      out.add(p);
      for (const i of p.input) if (i) stack.push(i);
    }
    return out;
  }

  analyse(b: AttentionBlock, o: PatchOptions, ratio: number, groupName: string, resolved: ResolvedGrid, region: Region): BlockWork | string {
    const g = this.g;
    const rewrites: BlockWork['rewrites'] = [];
    if (!b.patchable) {
      const blocking = b.hazards.filter((h) => h.kind !== 'baked-sequence-length' || !h.rewrite);
      if (blocking.length || !b.hazards.length) return b.reason ?? 'not patchable';
    }
    for (const h of b.hazards) {
      if (h.kind !== 'baked-sequence-length' || !h.rewrite) continue;
      const node = this.byName.get(h.rewrite.node);
      if (!node) return `hazard names a node that is not in the graph (${h.rewrite.node})`;
      rewrites.push({ node, index: h.rewrite.index, from: h.rewrite.from, to: h.rewrite.to });
    }
    const grid = resolved.grid;
    if (!grid) return `token grid unknown (${b.notes.find((n) => /grid/.test(n)) ?? 'the graph does not tell it'}): pass options.grid`;
    const N = grid[0] * grid[1];
    let P = 0;
    if (typeof b.tokens === 'number') {
      if (b.kind === 'joint' && b.tokens !== N) return `the image stream has ${b.tokens} tokens but the grid ${grid[0]}x${grid[1]} holds ${N}`;
      if (b.kind === 'self') {
        if (b.tokens < N) return `the block sees ${b.tokens} tokens, fewer than the grid ${grid[0]}x${grid[1]} = ${N}`;
        if (b.suffix) return `the block's text tokens follow its image tokens; the standard-ops rewrite merges a [text ; image] sequence only (segments mode handles it)`;
        P = b.tokens - N;
      }
    }
    const K = regionLayout(grid, region, ratio).K;
    const qProj = b.boundaries.q.projections[b.boundaries.q.projections.length - 1];
    const wt = qProj ? g.constTensor(qProj.weight) : undefined;
    const dtype: ElemType = wt && FLOAT_TYPES.has(wt.dataType) ? wt.dataType : DT.FLOAT;
    if (wt && !FLOAT_TYPES.has(wt.dataType)) return `the q projection weight has data type ${wt.dataType} (quantized?); only float models are patched`;

    // the merged span: from the norm output to to_out (+ bias), and to the text split for joint blocks
    const bd = b.boundaries;
    const x0 = bd.normOutput;
    const unmergeAt = bd.toOut?.output ?? bd.split?.imageOutput ?? bd.headMerge.output;
    const stops = [unmergeAt, ...(bd.split?.textOutput ? [bd.split.textOutput] : [])];
    const anc = this.ancestors(stops, x0);
    const spanConsumers = g.consumersOf(x0).filter((n) => anc.has(n));
    if (!spanConsumers.length) return `the norm output ${x0} does not reach the attention output ${unmergeAt}`;
    const stopSet = new Set(stops);
    const closure = new Set<NodeProto>();
    const spanTensors = new Set<string>();
    const queue = [...spanConsumers];
    while (queue.length) {
      const n = queue.pop()!;
      if (closure.has(n)) continue;
      closure.add(n);
      for (const out of n.output) {
        if (!out || stopSet.has(out)) continue;
        spanTensors.add(out);
        if (g.outputs.has(out)) return `${out}, computed from the merged tokens by ${nodeName(n)}, is a graph output: it would have K tokens`;
        for (const c of g.consumersOf(out)) queue.push(c);
      }
    }
    for (const n of closure) {
      if (anc.has(n)) continue;
      if (n.output.every((t) => !t || !g.consumersOf(t).length)) continue; // a dead end
      return `${nodeName(n)} reads tensors computed from the merged tokens but does not lead to the attention output: ToMA would change what it sees`;
    }
    // token-axis Slices of the merged sequence whose bounds come from unmerged shapes (SD3 splits
    // [image ; text] at Shape(residual)[1] = N): the bound becomes the merged count
    const sliceRewrites: BlockWork['sliceRewrites'] = [];
    for (const n of closure) {
      if (n.opType !== 'Slice' || n.input.length < 3) continue;
      const axes = n.input[3] ? (g.constValues(n.input[3], 4) ?? this.shapes.value(n.input[3])) : [0];
      const rank = this.shapes.shape(n.input[0])?.length;
      if (!axes || axes.length !== 1 || typeof axes[0] !== 'number' || !rank) continue;
      if ((axes[0] + rank) % rank !== 1) continue;
      for (const at of [1, 2]) {
        const t = n.input[at];
        if (!t || (g.producer(t) && closure.has(g.producer(t)!))) continue;
        const v = g.constValues(t, 4) ?? this.shapes.value(t);
        if (!v || v.length !== 1 || typeof v[0] !== 'number') continue;
        const text = b.kind === 'joint' ? (b.prefix ?? 0) + (b.suffix ?? 0) : P;
        if (v[0] === N && N !== text) sliceRewrites.push({ node: n, index: at, from: N, to: K });
        else if (v[0] === text + N && text > 0) sliceRewrites.push({ node: n, index: at, from: text + N, to: text + K });
      }
    }
    // sequence lengths baked into shape inputs that come from outside the span
    const seqLens = new Set([N, P + N, ...(b.kind === 'joint' && b.prefix !== undefined ? [b.prefix + (b.suffix ?? 0) + N] : [])]);
    const avoid = new Set([b.heads, b.headDim, b.channels, 0, 1, -1]);
    for (const n of closure) {
      const at = SHAPE_INPUTS[n.opType];
      if (at === undefined) continue;
      const t = n.input[at];
      if (!t || (g.producer(t) && closure.has(g.producer(t)!))) continue;
      const vals: Dim[] | undefined = g.constValues(t, 16) ?? this.shapes.value(t);
      if (!vals) continue;
      for (let i = 0; i < vals.length; i++) {
        const d = vals[i];
        if (typeof d !== 'number' || !seqLens.has(d) || avoid.has(d)) continue;
        if (rewrites.some((r) => r.node === n && r.index === i)) continue;
        return `${n.opType} ${nodeName(n)} takes the sequence length ${d} from ${t} (entry ${i}), which merging changes, and no -1/0 rewrite removes it`;
      }
    }
    // RoPE: the tables' rows at the destinations
    const rope: BlockWork['rope'] = [];
    for (const st of [bd.q, bd.k, bd.v]) {
      const r = st.rope;
      if (!r) continue;
      const muls = r.nodes.map((nm) => this.byName.get(nm)).filter((n): n is NodeProto => !!n && (n.input.includes(r.cos) || n.input.includes(r.sin)));
      if (muls.some((n) => !closure.has(n))) return `the RoPE multiplications of ${r.output} are not on the merged path`;
      const existing = rope.find((x) => x.cos === r.cos && x.sin === r.sin);
      if (existing) {
        for (const m of muls) if (!existing.muls.includes(m)) existing.muls.push(m);
        continue;
      }
      const cs = this.shapes.shape(r.cos);
      const ss = this.shapes.shape(r.sin);
      if (!cs || !ss || cs.some((d) => typeof d !== 'number') || JSON.stringify(cs) !== JSON.stringify(ss) || cs.length < 2)
        return `RoPE tables ${r.cos} / ${r.sin} need static, equal shapes [..., S, d] (got ${JSON.stringify(cs)} / ${JSON.stringify(ss)})`;
      const shape = cs as number[];
      // one axis of rows besides the channels, every other axis 1 ([S, d], [1, 1, S, d], [1, S, 1, d])
      const rowAxes = shape.slice(0, -1).map((d, i) => (d !== 1 ? i : -1)).filter((i) => i >= 0);
      if (rowAxes.length > 1) return `RoPE table ${r.cos} has shape [${shape}]: only one axis of rows besides the channels is supported`;
      const S = rowAxes.length ? shape[rowAxes[0]] : 1;
      const textRows = b.kind === 'joint' ? (b.prefix ?? -1) : P;
      const prefixRows = S === N ? 0 : S === textRows + N ? textRows : -1;
      if (prefixRows < 0) return `RoPE table ${r.cos} has ${S} rows; expected ${N} (image) or ${textRows + N} (prefix + image)`;
      const xs = this.shapes.shape(r.input);
      const rank = xs?.length ?? 0;
      // where the gathered rows need a unit head axis: [B, heads, S, d] at 1, [B, S, heads, d] at 2
      const headAxis = rank === 4 ? (xs![1] === b.heads ? 1 : xs![2] === b.heads ? 2 : -1) : rank === 3 ? 0 : -1;
      if (headAxis < 0) return `RoPE on ${r.input} of shape ${JSON.stringify(xs)}: only [B, heads, S, d], [B, S, heads, d] or [B, S, d] layouts are supported`;
      rope.push({ cos: r.cos, sin: r.sin, prefixRows, rank, headAxis, muls, cosShape: shape });
    }
    const firstIndex = Math.min(...spanConsumers.map((n) => this.index.get(n)!));
    const unmergeIndex = this.index.get(g.producer(unmergeAt)!) ?? firstIndex;
    return {
      block: b,
      report: { name: b.name, kind: b.kind, patched: true },
      grid,
      ratio,
      groupName,
      P,
      dtype,
      x0,
      unmergeAt,
      spanConsumers,
      spanTensors,
      rewrites,
      sliceRewrites,
      rope,
      firstIndex,
      unmergeIndex,
    };
  }
}

/**
 * Removes the nodes that computed only orphaned tensors (the zeros a bypassed Add read, say): a node
 * goes when nothing reads any of its outputs and none is a graph output. ONNX's standard ops have
 * no side effects, so this changes no result; it keeps dense [N, N] constants out of the file.
 */
function sweepDeadNodes(graph: GraphProto, orphans: Set<string>, g: GraphIndex): void {
  const readers = new Map<string, number>();
  for (const n of graph.node) for (const t of nodeReads(n)) readers.set(t, (readers.get(t) ?? 0) + 1);
  for (const o of graph.output) readers.set(o.name, (readers.get(o.name) ?? 0) + 1);
  const producerOf = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output) if (o) producerOf.set(o, n);
  const dead = new Set<NodeProto>();
  const stack = [...orphans];
  while (stack.length) {
    const t = stack.pop()!;
    const p = producerOf.get(t);
    if (!p || dead.has(p) || (p.domain !== '' && p.domain !== 'ai.onnx')) continue;
    if (p.output.some((o) => o && (readers.get(o) ?? 0) > 0)) continue;
    dead.add(p);
    for (const i of nodeReads(p)) {
      readers.set(i, (readers.get(i) ?? 0) - 1);
      stack.push(i);
    }
  }
  if (!dead.size) return;
  const nodes = graph.node.filter((n) => !dead.has(n));
  graph.node.splice(0, graph.node.length, ...nodes);
  const unread = new Set([...readers].filter(([, c]) => c <= 0).map(([t]) => t));
  const inits = graph.initializer.filter((t) => !unread.has(t.name) || g.inputs.has(t.name) || readers.get(t.name) === undefined);
  graph.initializer.splice(0, graph.initializer.length, ...inits);
}

function opsetOf(model: OnnxModel): number {
  const e = model.proto.opsetImport.find((x) => x.domain === '' || x.domain === 'ai.onnx');
  return e ? Number(e.version) : 0;
}

/**
 * Patches `model` in place (its graph; weights are untouched and stay where they are). Returns the
 * report; nothing is written.
 */
export function patchGraph(
  model: OnnxModel,
  options: PatchOptions,
  inputLabel = model.source.path ?? '<buffer>',
  bind?: Bind,
  hints?: GridHints,
): PatchReport {
  const t0 = performance.now();
  const { proc, o } = resolvePatchOptions(options);
  const opset = opsetOf(model);
  if (opset < 13)
    throw new RangeError(
      `the model imports default-domain opset ${opset}; the standard-ops rewrite needs opset 13 or newer ` +
        '(convert it first, e.g. onnx.version_converter.convert_version(model, 17))',
    );
  const region = proc.region ?? DEFAULT_REGION;
  const tau = proc.tau ?? 1000;
  const planIO: PlanIOMode = o.planIO ?? 'required';
  const precision = o.precision ?? 'float64';
  const graph = model.proto.graph!;
  canonicalizeRope(graph);
  const g = new GraphIndex(graph, model);
  const shapes = new ShapeInfo(g, bind);
  const an = new Analyser(g, shapes);
  const { blocks } = matchAttention(model, bind);

  // 1. which blocks, which groups
  const reports: PatchedBlock[] = [];
  const work: BlockWork[] = [];
  const candidates: Array<{ b: AttentionBlock; rep: PatchedBlock; ratio: number; groupName: string; resolved: ResolvedGrid }> = [];
  for (const b of blocks) {
    const rep: PatchedBlock = { name: b.name, kind: reportedKind(b), patched: false };
    reports.push(rep);
    if (b.kind === 'cross') {
      rep.reason = b.reason ?? 'cross-attention: left as exported';
      continue;
    }
    let ratio: number;
    if (typeof proc.ratio === 'function') {
      ratio = checkRatio(proc.ratio(b.name), `options.ratio('${b.name}')`, proc.maxRatio);
      if (ratio === 0) {
        rep.reason = `options.ratio('${b.name}') is 0: dense`;
        rep.dense = true;
        continue;
      }
    } else {
      ratio = proc.ratio as number;
    }
    if (proc.isDense(b.name)) {
      rep.reason = 'dense (options.dense)';
      rep.dense = true;
      continue;
    }
    const resolved = resolveGrid(b, o.grid, hints);
    if (resolved.warning) (o.onWarning ?? ((m: string) => process.emitWarning(m, { code: 'TOMA_STANDARD_OPS' })))(resolved.warning);
    const grid = resolved.grid;
    const groupName = grid ? proc.group(b.name, { grid, channels: b.channels }) : '?';
    if (typeof groupName !== 'string') throw new TypeError(`options.group('${b.name}') must return a string`);
    candidates.push({ b, rep, ratio, groupName, resolved });
  }
  // default: blocks where merging cannot pay stay dense (payoff.ts)
  if (options.dense === undefined) {
    const policy: PolicyBlock[] = candidates.map((c) => {
      const N = c.resolved.grid ? c.resolved.grid[0] * c.resolved.grid[1] : 0;
      const text = c.b.kind === 'joint' ? (c.b.prefix ?? 0) + (c.b.suffix ?? 0) : typeof c.b.tokens === 'number' ? Math.max(0, c.b.tokens - N) : 0;
      return {
        name: c.b.name,
        kind: c.b.kind,
        grid: c.resolved.grid,
        batch: shapes.shape(c.b.boundaries.normOutput)?.[0],
        text,
        channels: c.b.channels,
        heads: c.b.heads,
        fused: c.b.form !== 'matmul-softmax',
      };
    });
    const dense = defaultDense(policy, (name) => candidates.find((c) => c.b.name === name)!.ratio, 'standard-ops');
    for (const c of candidates) {
      const why = dense.get(c.b.name);
      if (!why) continue;
      c.rep.reason = why;
      c.rep.dense = true;
    }
  }
  for (const c of candidates) {
    if (c.rep.dense) continue;
    const w = an.analyse(c.b, o, c.ratio, c.groupName, c.resolved, region);
    if (typeof w === 'string') {
      c.rep.reason = w;
      if (c.groupName === '?' && w.startsWith('token grid unknown')) c.rep.needsGrid = true;
      continue;
    }
    w.report = c.rep;
    work.push(w);
  }

  if (o.requirePatched && !work.length)
    throw new Error(
      `standard-ops: requirePatched, but no attention block can be patched: ${reports.map((r) => `'${r.name}' (${r.reason})`).join(', ') || 'the model has none'}`,
    );

  // 2. emit
  const existing: string[] = [];
  for (const n of graph.node) {
    existing.push(n.name);
    for (const t of [...n.input, ...n.output]) if (t) existing.push(t);
  }
  for (const v of [...graph.input, ...graph.output, ...graph.valueInfo]) existing.push(v.name);
  for (const t of graph.initializer) existing.push(t.name);
  const names = new Names(existing);
  const root = new GraphBuilder(names, 'toma');
  const keys = new Map<NodeProto, number>();
  const keyed = (key: number, f: () => void) => {
    const before = root.nodes.length;
    f();
    for (let i = before; i < root.nodes.length; i++) keys.set(root.nodes[i], key);
  };
  const groups: PatchGroup[] = [];
  const addedInputs: PlanTensorInfo[] = [];
  const addedOutputs: PlanTensorInfo[] = [];
  let control: { isSelect: string; isWeights: string } | undefined;
  const valueInfoDrop = new Set<string>();
  /** Shape constants replaced by rewritten copies: removed when nothing reads them any more. */
  const orphans = new Set<string>();

  const byGroup = new Map<string, BlockWork[]>();
  for (const w of work) {
    const key = `${w.groupName}|${w.ratio}|${w.P}|${w.grid.join('x')}`;
    const list = byGroup.get(key);
    if (list) list.push(w);
    else byGroup.set(key, [w]);
  }
  for (const [key, members] of byGroup) {
    members.sort((a, b) => a.firstIndex - b.firstIndex);
    const head = members[0];
    const id = `g${groups.length}`;
    const spec: TomaSpec = tomaSpec({
      grid: head.grid,
      ratio: head.ratio,
      region,
      tau,
      shareBatch: proc.shareBatch,
      greedy: o.greedy,
      unrollLimit: o.unrollLimit,
      precision,
    });
    const L = spec.layout;
    const b = root.within(`toma/${id}`);
    const e = new TomaEmitter(b, spec);
    const grp: PatchGroup = {
      id,
      key,
      kind: head.block.kind,
      grid: head.grid,
      channels: head.block.channels,
      ratio: head.ratio,
      blocks: members.map((m) => m.block.name),
      N: L.N,
      K: L.K,
      regions: L.R,
      regionSize: L.nmax,
      slots: L.T,
      greedy: spec.identity ? undefined : spec.greedy,
    };
    groups.push(grp);
    const planKey = head.firstIndex - 0.5;
    const sliceTokens = (t: string, from: number, to: number) => b.op('Slice', [t, b.i64([from]), b.i64([to]), b.i64([1])]);
    const imageOf = (w: BlockWork) => (w.P ? sliceTokens(w.x0, w.P, w.P + L.N) : w.x0);

    // the group's plan, computed by its first block
    let headXr = '';
    let A = '';
    let destTok: string | undefined;
    let plan: PlanTensors | undefined;
    keyed(planKey, () => {
      headXr = e.regionGather(imageOf(head));
      if (spec.identity) {
        A = e.identityA();
        return;
      }
      if (planIO === 'none') {
        plan = e.freshPlan(headXr, head.dtype);
      } else {
        if (!control) {
          const mode = CONTROL_INPUT;
          if (names.has(mode)) throw new Error(`the model already has a tensor named ${mode}`);
          names.reserve(mode);
          graph.input.push(valueInfo(mode, DT.INT64, []));
          addedInputs.push({
            name: mode,
            role: 'control',
            dtype: 'int64',
            shape: [],
            onSelect: `${RECOMPUTE.select} (${RECOMPUTE.weights}: keep the destinations and re-weigh, ${RECOMPUTE.reuse}: reuse the plan fed)`,
          });
          const cb = root.within('toma/control');
          control = {
            isSelect: cb.op('Equal', [mode, cb.scalarI64(RECOMPUTE.select, 'code')]),
            isWeights: cb.op('Equal', [mode, cb.scalarI64(RECOMPUTE.weights, 'code')]),
          };
        }
        const io = {
          destIn: names.fresh(`toma_plan_${id}_dest`),
          AIn: names.fresh(`toma_plan_${id}_A`),
          destOut: names.fresh(`toma_plan_${id}_dest_out`),
          AOut: names.fresh(`toma_plan_${id}_A_out`),
        };
        const bs = proc.shareBatch ? 1 : `toma_batch`;
        graph.input.push(valueInfo(io.destIn, DT.INT64, [`toma_${id}_dest_batch`, L.R, L.T]), valueInfo(io.AIn, DT.FLOAT, [`toma_${id}_batch`, L.R, L.T, L.nmax]));
        graph.output.push(valueInfo(io.destOut, DT.INT64, [bs, L.R, L.T]), valueInfo(io.AOut, DT.FLOAT, ['toma_batch', L.R, L.T, L.nmax]));
        addedInputs.push(
          { name: io.destIn, role: 'destinations', dtype: 'int64', shape: ['B or 1', L.R, L.T], group: id, onSelect: `an empty tensor [0, ${L.R}, ${L.T}]` },
          { name: io.AIn, role: 'weights', dtype: 'float32', shape: ['B', L.R, L.T, L.nmax], group: id, onSelect: `an empty tensor [0, ${L.R}, ${L.T}, ${L.nmax}] (also on re-weigh steps)` },
        );
        addedOutputs.push(
          { name: io.destOut, role: 'destinations', dtype: 'int64', shape: [bs, L.R, L.T], group: id },
          { name: io.AOut, role: 'weights', dtype: 'float32', shape: ['B', L.R, L.T, L.nmax], group: id },
        );
        grp.inputs = { destinations: io.destIn, weights: io.AIn };
        grp.outputs = { destinations: io.destOut, weights: io.AOut };
        plan = e.controlledPlan(headXr, head.dtype, { ...control, ...io });
      }
      A = plan.A;
    });
    const mats = new Map<ElemType, MergeMatrices>();
    const matricesFor = (dt: ElemType) => {
      let m = mats.get(dt);
      if (!m) keyed(planKey, () => mats.set(dt, (m = e.matrices(A, dt))));
      return m!;
    };
    const destTokens = () => {
      if (!destTok)
        keyed(planKey, () => {
          destTok = plan
            ? e.destTokens(plan.dest)
            : b.i64(L.validSlots.map((s) => L.perm[Math.floor(s / L.T) * L.nmax + (s % L.T)]), [1, L.K], 'identity_dest');
        });
      return destTok!;
    };
    const ropeCache = new Map<string, string>();

    for (const w of members) {
      const { M, U } = matricesFor(w.dtype);
      // merge the block input; only the span's consumers see the merged tensor
      let merged = '';
      keyed(w.firstIndex - 0.25, () => {
        const xr = w === head ? headXr : e.regionGather(imageOf(w));
        merged = e.mergeRegions(xr, M);
        if (w.P) merged = b.op('Concat', [sliceTokens(w.x0, 0, w.P), merged], { axis: 1 });
      });
      for (const n of w.spanConsumers) n.input.forEach((t, i) => t === w.x0 && (n.input[i] = merged));
      // unmerge after to_out (+ bias): the producer writes a new name, the unmerge the old one
      const producer = g.producer(w.unmergeAt)!;
      const mergedOut = names.fresh(`${w.unmergeAt}/toma_merged`);
      producer.output.forEach((t, i) => t === w.unmergeAt && (producer.output[i] = mergedOut));
      keyed(w.unmergeIndex + 0.5, () => {
        let y = w.P ? sliceTokens(mergedOut, w.P, w.P + L.K) : mergedOut;
        y = e.unmerge(y, U);
        if (w.P) y = b.op('Concat', [sliceTokens(mergedOut, 0, w.P), y], { axis: 1 });
        b.op('Identity', [y], {}, w.unmergeAt);
      });
      // RoPE rows of the destinations
      for (const r of w.rope) {
        for (const table of [r.cos, r.sin]) {
          const cacheKey = `${table}|${r.prefixRows}|${r.rank}|${r.headAxis}`;
          let gathered = ropeCache.get(cacheKey);
          if (!gathered) {
            keyed(planKey + 0.1, () => {
              const d = r.cosShape[r.cosShape.length - 1];
              const S = r.cosShape.slice(0, -1).reduce((x, y) => x * y, 1);
              const t2 = r.cosShape.length === 2 ? table : b.op('Reshape', [table, b.i64([S, d], [2], 'shape')]);
              let idx = destTokens();
              if (r.prefixRows) {
                const zeros = b.op('Mul', [b.op('Slice', [idx, b.i64([0]), b.i64([1]), b.i64([1])]), b.scalarI64(0, 'zero')]);
                const text = b.op('Add', [zeros, b.i64(Array.from({ length: r.prefixRows }, (_, i) => i), [r.prefixRows], 'text_rows')]);
                idx = b.op('Concat', [text, b.op('Add', [idx, b.scalarI64(r.prefixRows, 'prefix')])], { axis: 1 });
              }
              gathered = b.op('Gather', [t2, idx], { axis: 0 }); // [Bs, S', d]
              if (r.rank === 4) gathered = b.op('Unsqueeze', [gathered, b.i64([r.headAxis], [1], 'axes')]);
            });
            ropeCache.set(cacheKey, gathered!);
          }
          for (const m of r.muls) m.input.forEach((t, i) => t === table && (m.input[i] = gathered!));
        }
      }
      // zeros added to the scores (baddbmm, beta=0) have the dense [.., N, N] shape: bypass them
      for (const za of w.block.boundaries.core.zeroAdds ?? []) {
        const n = an.byName.get(za);
        if (!n) continue;
        const keep = n.input.find((t) => !provablyZero(g, t)) ?? n.input[0];
        for (const t of n.input) if (t !== keep) orphans.add(t);
        n.opType = 'Identity';
        n.input.splice(0, n.input.length, keep);
      }
      // sequence lengths baked into shape constants: -1 / 0, on a private copy of the constant
      const byNode = new Map<NodeProto, BlockWork['rewrites']>();
      for (const r of w.rewrites) byNode.set(r.node, [...(byNode.get(r.node) ?? []), r]);
      for (const [node, rs] of byNode) {
        const vals = g.constValues(node.input[1], 16);
        if (!vals) throw new Error(`cannot read the shape constant of ${nodeName(node)}`);
        for (const r of rs) vals[r.index] = r.to;
        orphans.add(node.input[1]);
        node.input[1] = root.i64(vals, [vals.length], 'shape_rewritten');
      }
      for (const r of w.sliceRewrites) {
        orphans.add(r.node.input[r.index]);
        r.node.input[r.index] = root.i64([r.to], [1], 'slice_bound');
      }
      for (const t of w.spanTensors) valueInfoDrop.add(t);
      Object.assign(w.report, {
        patched: true,
        group: id,
        grid: w.grid,
        prefix: w.P || undefined,
        tokens: L.N,
        merged: L.K,
        ratio: w.ratio,
        rewrites: w.rewrites.length ? w.rewrites.map((r) => ({ node: nodeName(r.node), index: r.index, from: r.from, to: r.to })) : undefined,
        rope: w.rope.length ? w.rope.map((r) => ({ cos: r.cos, sin: r.sin, prefixRows: r.prefixRows })) : undefined,
      });
    }
  }

  // 3. assemble: new nodes in place, stale shapes dropped, constants added
  if (root.nodes.length) {
    const all = [...graph.node, ...root.nodes];
    const orig = new Map<NodeProto, number>();
    graph.node.forEach((n, i) => orig.set(n, i));
    const sorted = topoSort(all, (n) => orig.get(n) ?? keys.get(n) ?? -1);
    graph.node.splice(0, graph.node.length, ...sorted);
    graph.initializer.push(...root.initializers);
    const kept = graph.valueInfo.filter((v) => !valueInfoDrop.has(v.name));
    graph.valueInfo.splice(0, graph.valueInfo.length, ...kept);
    if (orphans.size) {
      const read = new Set<string>();
      for (const n of graph.node) for (const t of nodeReads(n)) read.add(t);
      for (const o of graph.output) read.add(o.name);
      const dead = new Set([...orphans].filter((t) => !read.has(t) && !g.inputs.has(t)));
      const inits = graph.initializer.filter((t) => !dead.has(t.name));
      graph.initializer.splice(0, graph.initializer.length, ...inits);
      const nodes = graph.node.filter((n) => !(n.opType === 'Constant' && n.output.length === 1 && dead.has(n.output[0])));
      graph.node.splice(0, graph.node.length, ...nodes);
      sweepDeadNodes(graph, orphans, g);
    }
  }

  return {
    mode: 'standard-ops',
    input: inputLabel,
    opset,
    ratio: options.ratio,
    region,
    tau,
    precision,
    planIO,
    blocks: reports,
    groups,
    control: control ? CONTROL_INPUT : undefined,
    inputs: addedInputs,
    outputs: addedOutputs,
    schedule: { destinationInterval: proc.destinationInterval, weightInterval: proc.weightInterval },
    nodesAdded: root.nodeCount,
    opsUsed: [...root.ops].sort(),
    ms: performance.now() - t0,
  };
}
