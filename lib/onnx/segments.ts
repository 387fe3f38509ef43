// Segment mode, the drop-in attention processor for onnxruntime-node (DESIGN: "The external runtime").
//
// The graph is cut at each patched self- or joint-attention block. Everything between the cut
// tensors and the head-merged attention output (head split, scale, Softmax, head merge; RoPE where
// toma rotates itself) is removed; the pieces run in onnxruntime-node sessions and toma's processor
// runs merge-attention-unmerge between them, on its reuse schedule (each run() is one denoising
// step; beginImage() restarts it). What crosses a cut:
//   piece -> toma: q, k, v as [B, T, C] tokens (after the projections and any per-head norm, before
//                  the head split: the graph's own tensors where they are [B, T, C], else a
//                  Transpose/Reshape added to the piece), the selection tokens x (the block's norm
//                  output; [context norm ; norm] for joint blocks), and for RoPE blocks
//                  [q | rot(q) | k | rot(k) | v] before the rotation plus cos/sin as [B, T, C];
//   toma -> piece: the attention output with heads merged, [B, T, C], the tensor the block's output
//                  projection reads;
//   piece -> piece: whatever later nodes read (residuals, text states, shape values).
// Cross-attention is never cut; dense blocks stay inside pieces.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import { createProcessor, type Processor, type ProcessorStats } from '../processor/processor';
import type { Tensor } from '../types';
import { GraphIndex } from './graph';
import { matchAttention, reportedKind, type AttentionBlock } from './matcher';
import { externalLocations, readModel, writeModel, type OnnxModel } from './model';
import type { OrtRunOptions, OrtSessionOptions, OrtTensor, SessionOptions, SessionStats, TomaSession } from './session-types';
import { ShapeInfo } from './shapes';
import { SpecializedSession, needsBinding, type Bind } from './specialize';
import { resolveGrid, type GridHints } from './grid';
import { defaultDense, ratioFor, type PolicyBlock } from './payoff';
import { canonicalizeRope } from './canonical';
import { analyzeBlock, nodesByName, type BlockCut } from './segments/analyze';
import { buildPieces, pieceGraph, type CutSpec, type PieceSpec } from './segments/pieces';
import { elemTypeOf, elemTypeOfInfo, loadOrt, typedValueInfo, type Ort } from './segments/ort';
import { RopeAttention } from './segments/rope';
import type { ValueInfoProto } from './gen/onnx_pb';

export type SegmentOptions = SessionOptions & {
  /** Reject when no attention block can be patched (default: warn and run the model as exported). */
  requirePatched?: boolean;
  /**
   * RoPE blocks: 'destination' (default) cuts before the rotation and rotates each merged token
   * with its destination's position, as the authors do; 'rotated' cuts after it and merges the
   * rotated q/k (what a graph that rotates right after the projections gives; a deviation).
   */
  rope?: 'destination' | 'rotated';
  /** Directory for the piece files of models without external data (default: the OS temp dir). */
  tmpDir?: string;
  /** Receives warnings (default: process.emitWarning). */
  onWarning?: (message: string) => void;
};

/** What segment mode did with one attention block the matcher found. */
export interface SegmentBlock {
  name: string;
  kind: 'self' | 'cross' | 'joint';
  grid?: [number, number];
  heads: number;
  channels: number;
  status: 'patched' | 'dense' | 'unpatched';
  /** Why the block is dense or unpatched. */
  reason?: string;
  /** RoPE blocks: where the rotation happens relative to the merge. */
  rope?: 'destination' | 'rotated';
  /** Patched blocks: the piece after which toma runs the block's attention. */
  afterPiece?: number;
}

export interface SegmentSessionStats extends SessionStats {
  blocks: SegmentBlock[];
  warnings: string[];
}

/**
 * onnxruntime's intra-op threads spin-wait after each run by default, taking the cores toma needs
 * between the pieces. Unless the caller's ortOptions.extra says otherwise, piece sessions get this.
 */
export const SEGMENT_SPIN_DEFAULT: Readonly<Record<string, string>> = { 'session.intra_op.allow_spinning': '0' };
const SPIN_KEYS = ['session.intra_op.allow_spinning', 'session.force_spinning_stop'];

/** ortOptions.extra as the Node binding reads it: nested objects flattened to dotted keys. */
function flattenExtra(extra: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (extra === null || typeof extra !== 'object') return out;
  for (const [k, v] of Object.entries(extra as Record<string, unknown>)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object') flattenExtra(v, key, out);
    else out[key] = String(v);
  }
  return out;
}

const SESSION_KEYS = new Set(['ratio', 'mode', 'grid', 'requirePatched', 'rope', 'tmpDir', 'onWarning']);

function checkGrid(grid: unknown): [number, number] | undefined {
  if (grid === undefined) return undefined;
  if (!Array.isArray(grid) || grid.length !== 2 || !grid.every((d) => Number.isInteger(d) && d >= 1))
    throw new TypeError(`options.grid must be [H, W] with positive integers, got ${JSON.stringify(grid)}`);
  return [grid[0], grid[1]];
}

/** SPEC 7's default: in each kind (self, joint) with blocks in several groups, the first group stays dense. */
export function defaultDenseBlocks(
  blocks: Array<{ name: string; kind: string; grid: [number, number]; channels: number }>,
  group: (block: string, info: { grid: [number, number]; channels: number }) => string,
): Map<string, string> {
  const dense = new Map<string, string>();
  for (const kind of ['self', 'joint']) {
    const of = blocks.filter((b) => b.kind === kind);
    const groups: string[] = [];
    const byGroup = new Map<string, string[]>();
    for (const b of of) {
      const g = group(b.name, { grid: b.grid, channels: b.channels });
      if (!byGroup.has(g)) {
        groups.push(g);
        byGroup.set(g, []);
      }
      byGroup.get(g)!.push(b.name);
    }
    if (groups.length < 2) continue;
    for (const n of byGroup.get(groups[0])!)
      dense.set(n, `dense by default: first of ${groups.length} ${kind}-attention block groups ('${groups[0]}'); pass dense: [] to merge it`);
  }
  return dense;
}

function toToma(t: OrtTensor, name: string): Tensor {
  if (t.type === 'float32') return { data: t.data as Float32Array, shape: [...t.dims], dtype: 'float32' };
  if (t.type === 'float16') return { data: t.data as unknown as Uint16Array, shape: [...t.dims], dtype: 'float16' };
  throw new TypeError(`segments: ${name} is ${t.type}; toma merges float32 and float16 tokens`);
}

/** [B, T, C] with each batch's rows [k, T) moved in front of rows [0, k). */
function rotateRows(t: Tensor, k: number): Tensor {
  const [B, T, C] = t.shape;
  if (k <= 0 || k >= T) return t;
  const src = t.data;
  const dst = new (src.constructor as { new (n: number): Float32Array | Uint16Array })(src.length);
  for (let b = 0; b < B; b++) {
    const base = b * T * C;
    dst.set(src.subarray(base + k * C, base + T * C), base);
    dst.set(src.subarray(base, base + k * C), base + (T - k) * C);
  }
  return { ...t, data: dst };
}

function rethrow(e: unknown, block: string): never {
  const err = e as Error;
  const msg = `block '${block}': ${err?.message ?? String(e)}`;
  if (err instanceof RangeError) throw new RangeError(msg);
  if (err instanceof TypeError) throw new TypeError(msg);
  throw new Error(msg);
}

interface Runtime {
  spec: PieceSpec;
  session?: import('onnxruntime-node').InferenceSession;
}

export class SegmentSession implements TomaSession {
  private step = 0;
  private runs = 0;
  private ortMs = 0;
  private tomaMs = 0;
  private totalMs = 0;
  private released = false;
  private busy = false;
  private readonly cutsAfter: CutSpec[][];

  constructor(
    private readonly ort: Ort,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    private readonly pieces: Runtime[],
    private readonly cuts: CutSpec[],
    private readonly grids: Map<string, { grid: [number, number]; from: string }>,
    private readonly processor: Processor,
    private readonly rope: RopeAttention,
    private readonly blocks: SegmentBlock[],
    private readonly warnings: string[],
    private readonly optionalInputs: Set<string>,
  ) {
    this.cutsAfter = pieces.map(() => []);
    for (const c of cuts) this.cutsAfter[c.stage].push(c);
  }

  beginImage(): void {
    this.processor.beginImage();
    this.rope.beginImage();
    this.step = 0;
  }

  async run(feeds: Record<string, OrtTensor>, options?: OrtRunOptions): Promise<Record<string, OrtTensor>> {
    if (this.released) throw new Error('session: run() after release()');
    if (feeds === null || typeof feeds !== 'object') throw new TypeError('feeds must be an object { inputName: Tensor }');
    for (const k of Object.keys(feeds))
      if (!this.inputNames.includes(k)) throw new TypeError(`feeds: '${k}' is not an input of the model (inputs: ${this.inputNames.join(', ')})`);
    for (const k of this.inputNames)
      if (!(k in feeds) && !this.optionalInputs.has(k)) throw new TypeError(`feeds: the model's input '${k}' is missing`);
    if (this.busy) throw new Error('session: run() while another run() of this session is in progress (each run() is one denoising step: await it)');
    this.busy = true;
    try {
      return await this.runStep(feeds, options);
    } finally {
      this.busy = false;
    }
  }

  private async runStep(feeds: Record<string, OrtTensor>, options?: OrtRunOptions): Promise<Record<string, OrtTensor>> {
    const t0 = performance.now();
    const store = new Map<string, OrtTensor>(Object.entries(feeds));
    this.processor.beginStep(this.step);
    for (const rt of this.pieces) {
      if (rt.session) {
        const inputs: Record<string, OrtTensor> = {};
        for (const n of rt.session.inputNames) {
          const t = store.get(n);
          if (t) inputs[n] = t;
          else if (!this.optionalInputs.has(n)) throw new Error(`segments: piece ${rt.spec.index} needs ${n}, which no earlier step produced`);
        }
        const a = performance.now();
        const out = options ? await rt.session.run(inputs, options) : await rt.session.run(inputs);
        this.ortMs += performance.now() - a;
        for (const [k, v] of Object.entries(out)) store.set(k, v);
      }
      for (const c of this.cutsAfter[rt.spec.index]) {
        const a = performance.now();
        store.set(c.output, await this.runCut(c, store));
        this.tomaMs += performance.now() - a;
      }
    }
    const result: Record<string, OrtTensor> = {};
    for (const n of this.outputNames) {
      const t = store.get(n);
      if (!t) throw new Error(`segments: output ${n} was not produced`);
      result[n] = t;
    }
    this.totalMs += performance.now() - t0;
    this.runs++;
    this.step++;
    return result;
  }

  private async runCut(c: CutSpec, store: Map<string, OrtTensor>): Promise<OrtTensor> {
    const get = (n: string) => {
      const t = store.get(n);
      if (!t) throw new Error(`segments: block '${c.block}' needs ${n}, which no piece produced`);
      return toToma(t, n);
    };
    const { grid, from } = this.grids.get(c.block)!;
    // text after the image (SD3): toma's ops take the text in front, so the rows move there and back
    const image = grid[0] * grid[1];
    const front = (t: Tensor) => (c.suffix ? rotateRows(t, image) : t);
    let out: Tensor;
    try {
      const xRaw = c.x ? get(c.x) : undefined;
      // a joint block's selection tokens are built [context ; image] already
      const x = xRaw && c.kind === 'self' ? front(xRaw) : xRaw;
      const prefix = c.prefix + c.suffix;
      if (c.rope) {
        out = await this.rope.run(this.step, front(get(c.rope.packed)), front(get(c.rope.cos)), front(get(c.rope.sin)), x, {
          block: c.block,
          grid,
          heads: c.heads,
          prefix,
          scale: c.scale,
        });
      } else {
        out = await this.processor.attention(front(get(c.q)), front(get(c.k)), front(get(c.v)), {
          block: c.block,
          grid,
          heads: c.heads,
          prefix,
          scale: c.scale,
          x,
        });
      }
      if (c.suffix) out = rotateRows(out, c.suffix);
    } catch (e) {
      const q = store.get(c.rope ? c.rope.packed : c.q);
      const T = q?.dims[1];
      const text = c.prefix + c.suffix;
      const N = typeof T === 'number' ? T - text : undefined;
      if (N !== undefined && N !== grid[0] * grid[1])
        rethrow(
          new RangeError(
            `${N} image tokens do not form the grid [${grid}] (${from}); H * W must equal the token count${text ? ` besides the ${text} text tokens` : ''}: pass the right options.grid`,
          ),
          c.block,
        );
      rethrow(e, c.block);
    }
    const type = out.dtype === 'float16' ? 'float16' : 'float32';
    return new this.ort.Tensor(type, out.data as Float32Array, out.shape);
  }

  stats(): SegmentSessionStats {
    const p = this.processor.stats();
    const r = this.rope.stats();
    const merged = p.blocksMerged + r.blocksMerged;
    const processor: ProcessorStats = {
      images: p.images,
      step: this.step,
      plansComputed: p.plansComputed + r.plansComputed,
      weightsRecomputed: p.weightsRecomputed + r.weightsRecomputed,
      plansReused: p.plansReused + r.plansReused,
      blocksMerged: merged,
      blocksDense: p.blocksDense + r.blocksDense,
      planMs: p.planMs + r.planMs,
      attentionMs: p.attentionMs + r.attentionMs,
      meanRatio: merged ? (p.meanRatio * p.blocksMerged + r.ratioSum) / merged : 0,
    };
    return {
      mode: 'segments',
      patchedBlocks: this.blocks.filter((b) => b.status === 'patched').map((b) => b.name),
      step: this.step,
      runs: this.runs,
      ortMs: this.ortMs,
      tomaMs: this.tomaMs,
      totalMs: this.totalMs,
      segments: this.pieces.filter((x) => x.session).length,
      processor,
      blocks: this.blocks.map((b) => ({ ...b })),
      warnings: [...this.warnings],
    };
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const p of this.pieces) await p.session?.release();
  }
}

// ---------------------------------------------------------------------------------------------
// writing pieces where onnxruntime can resolve the model's external data

interface PieceWriter {
  write(model: OnnxModel, index: number): Promise<{ file: string; sessionOptions?: Partial<OrtSessionOptions> }>;
  cleanup(): void;
}

function isPermissionError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EROFS' || code === 'EPERM';
}

async function pieceWriter(model: OnnxModel, tmpRoot: string | undefined, warn: (m: string) => void): Promise<PieceWriter> {
  const src = model.source;
  const locations = externalLocations(model.proto);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const written: string[] = [];
  const dirs: string[] = [];
  const cleanup = () => {
    for (const f of written) fs.rmSync(f, { force: true });
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  };
  const inTmp = () => {
    const d = fs.mkdtempSync(path.join(tmpRoot ?? os.tmpdir(), 'toma-segments-'));
    dirs.push(d);
    return d;
  };
  if (!locations.length || !src.dir) {
    const dir = inTmp();
    return {
      async write(m, i) {
        const file = path.join(dir, `piece${i}.onnx`);
        await writeModel(m, file, { fsync: false });
        written.push(file);
        return { file };
      },
      cleanup,
    };
  }
  // External data: beside the original (locations stay valid), else hard links in a temp
  // directory, else onnxruntime's externalData option with the data files in memory.
  const base = path.basename(src.path ?? 'model.onnx');
  let mode: 'beside' | 'links' | 'memory' = 'beside';
  let linkDir: string | undefined;
  try {
    const probe = path.join(src.dir, `.${base}.toma-${tag}.probe`);
    fs.writeFileSync(probe, '');
    fs.rmSync(probe);
  } catch (e) {
    if (!isPermissionError(e)) throw e;
    mode = 'links';
    try {
      linkDir = inTmp();
      for (const loc of locations) {
        const to = path.join(linkDir, loc);
        fs.mkdirSync(path.dirname(to), { recursive: true });
        fs.linkSync(path.resolve(src.dir, loc), to);
      }
    } catch {
      mode = 'memory';
    }
  }
  let externalData: Array<{ path: string; data: Uint8Array }> | undefined;
  if (mode === 'memory') {
    let total = 0;
    for (const loc of locations) total += fs.statSync(path.resolve(src.dir, loc)).size;
    if (total > 2 ** 31 - 1)
      throw new Error(
        `segments: cannot write the pieces beside ${src.path} (directory not writable) nor link its ${total} bytes of external data; make the directory writable or copy the model somewhere writable`,
      );
    warn(`segments: ${src.dir} is not writable; the model's external data (${total} bytes) is passed to onnxruntime from memory`);
    externalData = locations.map((loc) => ({ path: loc, data: fs.readFileSync(path.resolve(src.dir!, loc)) }));
    linkDir = linkDir ?? inTmp();
  }
  return {
    async write(m, i) {
      const dir = mode === 'beside' ? src.dir! : linkDir!;
      const file = path.join(dir, mode === 'beside' ? `.${base}.toma-${tag}.piece${i}.onnx` : `piece${i}.onnx`);
      // keep the external data locations as written: they resolve from `dir` as from the original's
      await writeModel({ ...m, source: { ...m.source, dir } }, file, { fsync: false });
      written.push(file);
      return { file, sessionOptions: externalData ? { externalData } : undefined };
    },
    cleanup,
  };
}

// ---------------------------------------------------------------------------------------------

/** toma.onnx.createSession(path, { mode: 'segments', ... }): see the file's header. */
export async function createSegmentSession(file: string, options: SegmentOptions, ortOptions: OrtSessionOptions = {}): Promise<SpecializedSession<SegmentSession>> {
  if (options === null || typeof options !== 'object') throw new TypeError('options must be an object { ratio, ... }');
  const ort = loadOrt();
  if (options.mode !== undefined && options.mode !== 'segments')
    throw new RangeError(`options.mode must be 'segments' here, got ${String(options.mode)}`);
  if (options.rope !== undefined && options.rope !== 'destination' && options.rope !== 'rotated')
    throw new RangeError(`options.rope must be 'destination' or 'rotated', got ${String(options.rope)}`);
  const userGrid = checkGrid(options.grid);
  const procOptions: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) if (!SESSION_KEYS.has(k)) procOptions[k] = v;
  procOptions.ratio = options.ratio;
  // validates every processor option (ratio, intervals, dense, group, method, ...) now
  createProcessor(procOptions as never);

  const model = await readModel(file);
  const build = (bind: Bind | undefined, hints?: GridHints) => buildSegmentSession(ort, model, options, procOptions, ortOptions, bind, userGrid, hints);
  if (!needsBinding(model, userGrid)) return new SpecializedSession(model, build, 'segments', await build(undefined));
  return new SpecializedSession(model, build, 'segments');
}

/** The segment session for one set of input shapes (`bind`; undefined: the model's static shapes). */
async function buildSegmentSession(
  ort: Ort,
  model: OnnxModel,
  options: SegmentOptions,
  procOptions: Record<string, unknown>,
  ortOptions: OrtSessionOptions,
  bind: Bind | undefined,
  userGrid: [number, number] | undefined,
  hints?: GridHints,
): Promise<SegmentSession> {
  const warnings: string[] = [];
  const emit = options.onWarning ?? ((m: string) => process.emitWarning(m, { code: 'TOMA_SEGMENTS' }));
  const warn = (m: string) => {
    warnings.push(m);
    emit(m);
  };
  let processor = createProcessor(procOptions as never);
  canonicalizeRope(model.proto.graph!);
  const g = new GraphIndex(model.proto.graph!, model);
  const shapes = new ShapeInfo(g, bind);
  const nodes = nodesByName(g);
  const match = matchAttention(model, bind);

  // 1. which blocks can be cut, and on which grid
  const blocks: SegmentBlock[] = [];
  const cuttable: Array<{ block: AttentionBlock; cut: BlockCut; report: SegmentBlock; grid?: [number, number]; gridFrom: string }> = [];
  for (const b of match.blocks) {
    const report: SegmentBlock = { name: b.name, kind: reportedKind(b), ...(b.grid ? { grid: b.grid } : {}), heads: b.heads, channels: b.channels, status: 'unpatched' };
    blocks.push(report);
    const a = analyzeBlock(g, shapes, nodes, b, options.rope !== 'rotated');
    if (!a.ok) {
      report.reason = a.reason;
      continue;
    }
    if (b.grid && userGrid && (b.grid[0] !== userGrid[0] || b.grid[1] !== userGrid[1]))
      warn(`block '${b.name}': the graph's token grid is [${b.grid}]; options.grid [${userGrid}] is ignored for it`);
    const rg = resolveGrid(b, userGrid, hints);
    const grid = rg.grid;
    const gridFrom = rg.from;
    if (rg.warning) warn(rg.warning);
    if (grid) report.grid = grid;
    if (b.boundaries.q.rope) report.rope = a.cut.rope ? 'destination' : 'rotated';
    cuttable.push({ block: b, cut: a.cut, report, grid, gridFrom });
  }

  // 2. dense blocks: options.dense, else the default: blocks where merging cannot pay (payoff.ts)
  let denseReason = new Map<string, string>();
  if (options.dense === undefined) {
    const policy: PolicyBlock[] = cuttable.map((c) => ({
      name: c.block.name,
      kind: c.block.kind,
      grid: c.grid,
      batch: shapes.shape(c.block.boundaries.normOutput)?.[0],
      text: c.cut.prefix + c.cut.suffix,
      channels: c.block.channels,
      heads: c.block.heads,
      fused: c.block.form !== 'matmul-softmax',
      rope: !!c.cut.rope,
    }));
    denseReason = defaultDense(policy, (b) => ratioFor(options.ratio, b), 'segments');
    if (denseReason.size) {
      procOptions.dense = [...denseReason.keys()];
      processor = createProcessor(procOptions as never);
    }
  }
  const ratio0 = typeof options.ratio === 'number' && options.ratio === 0;
  const chosen: typeof cuttable = [];
  for (const c of cuttable) {
    if (ratio0) {
      c.report.status = 'dense';
      c.report.reason = 'ratio 0: the model runs as exported';
    } else if (processor.options.isDense(c.block.name)) {
      c.report.status = 'dense';
      c.report.reason = denseReason.get(c.block.name) ?? 'dense (options.dense)';
    } else {
      chosen.push(c);
    }
  }
  for (const c of chosen) {
    const n = c.block.tokens;
    if (c.grid && c.gridFrom === 'options.grid' && typeof n === 'number' && n !== c.grid[0] * c.grid[1])
      throw new RangeError(`options.grid: [${c.grid}] has ${c.grid[0] * c.grid[1]} tokens but block '${c.block.name}' has ${n} image tokens`);
  }
  const noGrid = chosen.filter((c) => !c.grid);
  if (noGrid.length)
    throw new TypeError(
      `options.grid: required for ${noGrid.map((c) => `'${c.block.name}'`).join(', ')}: ` +
        `${noGrid[0].block.notes.find((n) => n.startsWith('token grid')) ?? 'the graph does not tell the token grid'}. ` +
        `Pass grid: [H, W] with H * W = image tokens (e.g. [1, W'] for a text line), or list those blocks in options.dense`,
    );
  for (const c of chosen) {
    c.report.status = 'patched';
    if (c.cut.ropeAfterCut && options.rope !== 'rotated')
      warn(
        `block '${c.block.name}': the cut sits after RoPE (${c.cut.ropeAfterCut}), so toma merges already-rotated q/k; ` +
          "the authors rotate each merged token with its destination's position (REFERENCE 1.4)",
      );
  }
  if (!chosen.length && !ratio0) {
    const dense = blocks.filter((b) => b.status === 'dense');
    if (dense.length) {
      if (options.requirePatched) throw new Error(`segments: requirePatched, but every patchable block is dense: ${dense.map((b) => `'${b.name}' (${b.reason})`).join(', ')}`);
    } else {
      const selfish = blocks.filter((b) => b.kind !== 'cross');
      const why = selfish.length
        ? selfish.map((b) => `'${b.name}': ${b.reason ?? 'unpatched'}`).join('; ')
        : match.blocks.length
          ? 'only cross-attention blocks were found, and toma never merges cross-attention'
          : `no attention block was found${match.skipped.length ? ` (${match.skipped.map((x) => `${x.node}: ${x.reason}`).join('; ')})` : ''}`;
      const msg = `segments: no attention block of ${model.source.path} is patched, the model runs as exported: ${why}`;
      if (options.requirePatched) throw new Error(msg);
      warn(msg);
    }
  }

  const grids = new Map<string, { grid: [number, number]; from: string }>();
  for (const c of chosen) grids.set(c.block.name, { grid: c.grid!, from: c.gridFrom });
  const rope = new RopeAttention(processor.options);
  const sessionOptions: OrtSessionOptions = { ...ortOptions };
  const graphInputs = model.proto.graph!.input.filter((v) => !g.initializers.has(v.name)).map((v) => v.name);
  const optionalInputs = new Set(model.proto.graph!.input.filter((v) => g.initializers.has(v.name)).map((v) => v.name));
  const outputNames = model.proto.graph!.output.map((v) => v.name);

  // 3. no cut: one session on the original file
  if (!chosen.length) {
    const session = await ort.InferenceSession.create(model.source.path!, sessionOptions);
    const spec: PieceSpec = {
      index: 0,
      nodes: [],
      initializers: [],
      sparseInitializers: [],
      graphInputs: [],
      optionalInputs: new Set(),
      crossInputs: [],
      outputs: [],
      graphOutputs: new Map(),
      valueInfo: [],
    };
    return new SegmentSession(ort, [...session.inputNames], [...session.outputNames], [{ spec, session }], [], grids, processor, rope, blocks, warnings, optionalInputs);
  }

  // 4. cut, write and load the pieces in order (each piece's output types type the next's inputs)
  if (sessionOptions.optimizedModelFilePath) {
    warn('segments: ortOptions.optimizedModelFilePath is ignored (each piece would overwrite it)');
    delete (sessionOptions as { optimizedModelFilePath?: string }).optimizedModelFilePath;
  }
  const extra = flattenExtra(sessionOptions.extra);
  if (!SPIN_KEYS.some((k) => k in extra)) Object.assign(extra, SEGMENT_SPIN_DEFAULT);
  sessionOptions.extra = extra;
  const { pieces, cuts } = buildPieces(g, chosen.map((c) => c.cut), (t) => shapes.shape(t));
  for (const cs of cuts) {
    const c = chosen.find((x) => x.block.name === cs.block)!;
    c.report.afterPiece = cs.stage;
  }
  const types = new Map<string, ValueInfoProto>();
  for (const v of model.proto.graph!.input) types.set(v.name, v);
  const writer = await pieceWriter(model, options.tmpDir, warn);
  const runtimes: Runtime[] = [];
  try {
    for (const piece of pieces) {
      const rt: Runtime = { spec: piece };
      runtimes.push(rt);
      if (piece.nodes.length) {
        const graph = pieceGraph(model.proto.graph!, piece, types);
        const proto = { ...model.proto, graph, trainingInfo: [] };
        const { file: pf, sessionOptions: extra } = await writer.write({ ...model, proto }, piece.index);
        try {
          rt.session = await ort.InferenceSession.create(pf, { ...sessionOptions, ...(extra ?? {}) });
        } catch (e) {
          throw new Error(`segments: onnxruntime rejected piece ${piece.index} of ${model.source.path}: ${(e as Error).message}`);
        }
        const meta = rt.session.outputMetadata as unknown as Array<{ name: string; isTensor: boolean; type?: string; shape?: Array<number | string> }>;
        for (const m of meta) {
          if (!m.isTensor || !m.type) continue;
          const known = shapes.shape(m.name);
          types.set(m.name, typedValueInfo(m.name, elemTypeOf(m.type), known ?? m.shape));
        }
      }
      for (const cs of cuts.filter((c) => c.stage === piece.index)) {
        const src = cs.rope ? cs.rope.packed : cs.q;
        const et = elemTypeOfInfo(types.get(src));
        if (et === undefined) throw new Error(`segments: the type of ${src} (block '${cs.block}') is unknown`);
        types.set(cs.output, typedValueInfo(cs.output, et, shapes.shape(cs.output)));
      }
    }
  } catch (e) {
    for (const rt of runtimes) await rt.session?.release().catch(() => undefined);
    throw e;
  } finally {
    writer.cleanup();
  }
  return new SegmentSession(ort, graphInputs, outputNames, runtimes, cuts, grids, processor, rope, blocks, warnings, optionalInputs);
}
