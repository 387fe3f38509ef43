// A TomaSession over the standard-ops rewrite: one onnxruntime session of the patched graph; the
// session hides the plan inputs/outputs and threads them between run() calls on the reuse
// schedule of SPEC 7 (every group's first block follows the same schedule, so one control input
// serves all groups).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { encodeModel, externalLocations, readModel, writeModel } from '../model';
import type { OrtRunOptions, OrtSessionOptions, OrtTensor, SessionOptions, SessionStats, TomaSession } from '../session-types';
import type { ProcessorStats } from '../../processor/processor';
import { planAction, type GroupHistory, type PlanAction } from '../../processor/schedule';
import { patchGraph, resolvePatchOptions, CONTROL_INPUT, type PatchOptions, type PatchReport } from './patch';
import { RECOMPUTE } from './toma-graph';
import { SpecializedSession, needsBinding, type Bind } from '../specialize';
import type { GridHints } from '../grid';

type Ort = typeof import('onnxruntime-node');

/** onnxruntime-node, loaded only when a session is made (it is an optional peer dependency). */
export function loadOrt(): Ort {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('onnxruntime-node') as Ort;
  } catch (e) {
    throw new Error(
      `toma.onnx sessions need onnxruntime-node (an optional peer dependency): npm install onnxruntime-node ` +
        `(${(e as Error).message.split('\n')[0]})`,
    );
  }
}

export interface StandardOpsStats extends SessionStats {
  mode: 'standard-ops';
  processor: ProcessorStats;
  /** What the groups' plans did on each step since beginImage(): 'select', 'weights' or 'reuse'. */
  actions: PlanAction[];
}

export interface StandardOpsSession extends TomaSession {
  /** What the rewrite did (blocks, groups, plan tensors). */
  readonly report: PatchReport;
  stats(): StandardOpsStats;
}

/** Largest model (bytes) handed to onnxruntime as a buffer; bigger ones go through a temporary file. */
const BUFFER_LIMIT = 512 << 20;

async function createOrtSession(ort: Ort, model: Awaited<ReturnType<typeof readModel>>, ortOptions?: OrtSessionOptions) {
  const external = externalLocations(model.proto).length > 0;
  if (!external && model.source.size < BUFFER_LIMIT) {
    return ort.InferenceSession.create(encodeModel(model, BUFFER_LIMIT * 2), ortOptions ?? {});
  }
  // beside the input, so external data locations stay valid; removed once onnxruntime has loaded it
  const dir = model.source.dir ?? process.cwd();
  const base = path.basename(model.source.path ?? 'model.onnx');
  const tmp = path.join(dir, `.${base}.toma-standard-ops-${process.pid}-${randomBytes(4).toString('hex')}.onnx`);
  await writeModel(model, tmp, { fsync: false });
  try {
    return await ort.InferenceSession.create(tmp, ortOptions ?? {});
  } finally {
    await fs.promises.unlink(tmp).catch(() => undefined);
  }
}

/**
 * A TomaSession running the model rewritten with ToMA in standard ONNX operators (any execution
 * provider). options.ratio 0 runs the model as exported.
 */
export async function createStandardOpsSession(
  file: string,
  options: SessionOptions,
  ortOptions?: OrtSessionOptions,
): Promise<StandardOpsSession & SpecializedSession<StandardOpsSession>> {
  if (typeof file !== 'string' || file.length === 0)
    throw new TypeError(`path: expected the path of an .onnx file, got ${typeof file === 'string' ? 'an empty string' : typeof file}`);
  resolvePatchOptions({ ...(options as PatchOptions), planIO: 'required' });
  const ort = loadOrt();
  const model = await readModel(file);
  // patchGraph rewrites the graph it is given: each shape variant patches a fresh read of the file
  let first: typeof model | undefined = model;
  const build = async (bind: Bind | undefined, hints?: GridHints) => {
    const m = first ?? (await readModel(file));
    first = undefined;
    return buildStandardOpsSession(ort, file, m, options, ortOptions, bind, hints);
  };
  const grid = (options as PatchOptions).grid;
  if (!needsBinding(model, grid)) return new StandardOpsSpecialized(model, build, await build(undefined));
  // before the first run: what the rewrite finds without the input shapes (a throwaway read)
  const preview = patchGraph(await readModel(file), { ...(options as PatchOptions), planIO: 'required' }, model.source.path);
  return new StandardOpsSpecialized(model, build, undefined, preview);
}

/** The standard-ops session over shape variants; `report` is the last run's variant's (a preview before it). */
class StandardOpsSpecialized extends SpecializedSession<StandardOpsSession> implements StandardOpsSession {
  constructor(
    model: Awaited<ReturnType<typeof readModel>>,
    build: (bind: Bind | undefined, hints?: GridHints) => Promise<StandardOpsSession>,
    first?: StandardOpsSession,
    private readonly preview?: PatchReport,
  ) {
    super(model, build, 'standard-ops', first);
  }

  get report(): PatchReport {
    return this.current?.report ?? this.preview!;
  }

  stats(): StandardOpsStats & { variants: number } {
    const s = super.stats() as StandardOpsStats & { variants: number };
    if (!this.current) return { ...s, mode: 'standard-ops', processor: emptyProcessorStats(), actions: [] };
    return s;
  }
}

function emptyProcessorStats(): ProcessorStats {
  return { images: 0, step: 0, plansComputed: 0, weightsRecomputed: 0, plansReused: 0, blocksMerged: 0, blocksDense: 0, planMs: 0, attentionMs: 0, meanRatio: 0 };
}

async function buildStandardOpsSession(
  ort: Ort,
  file: string,
  model: Awaited<ReturnType<typeof readModel>>,
  options: SessionOptions,
  ortOptions: OrtSessionOptions | undefined,
  bind: Bind | undefined,
  hints?: GridHints,
): Promise<StandardOpsSession> {
  const { proc } = resolvePatchOptions({ ...(options as PatchOptions), planIO: 'required' });
  const report = patchGraph(model, { ...(options as PatchOptions), planIO: 'required' }, model.source.path, bind, hints);
  const noGrid = report.blocks.filter((b) => b.needsGrid);
  if (noGrid.length)
    throw new TypeError(
      `options.grid: required for ${noGrid.map((b) => `'${b.name}'`).join(', ')}: ${noGrid[0].reason}. ` +
        'Pass grid: [H, W] with H * W = image tokens, or list those blocks in options.dense',
    );
  if (proc.ratio === 0) {
    // ratio 0 keeps every token: the report says what would be patched; the model runs as exported
    for (const b of report.blocks) if (b.patched) Object.assign(b, { patched: false, reason: 'ratio 0: the model runs as exported' });
    report.groups = [];
    report.inputs = [];
    report.outputs = [];
    report.control = undefined;
  }
  const session = report.groups.length ? await createOrtSession(ort, model, ortOptions) : await ort.InferenceSession.create(file, ortOptions ?? {});
  return new StandardOpsSessionImpl(ort, session, report, proc.destinationInterval, proc.weightInterval);
}

interface GroupIO {
  id: string;
  blocks: number;
  destIn: string;
  AIn: string;
  destOut: string;
  AOut: string;
  R: number;
  T: number;
  n: number;
  removed: number;
}

class StandardOpsSessionImpl implements StandardOpsSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly hiddenInputs: Set<string>;
  private readonly hiddenOutputs: Set<string>;
  private readonly groups: GroupIO[];
  private readonly patchedBlocks: string[];
  private readonly denseBlocks: number;
  private step = 0;
  private runs = 0;
  private images = 0;
  private history: GroupHistory = {};
  private plans = new Map<string, { dest: OrtTensor; A: OrtTensor }>();
  private signature = '';
  private actions: PlanAction[] = [];
  private busy = false;
  private released = false;
  private c = { ortMs: 0, totalMs: 0, plansComputed: 0, weightsRecomputed: 0, plansReused: 0, blocksMerged: 0, blocksDense: 0, ratioSum: 0 };

  constructor(
    private readonly ort: Ort,
    private readonly session: import('onnxruntime-node').InferenceSession,
    readonly report: PatchReport,
    private readonly destinationInterval: number,
    private readonly weightInterval: number,
  ) {
    this.hiddenInputs = new Set(report.inputs.map((i) => i.name));
    this.hiddenOutputs = new Set(report.outputs.map((o) => o.name));
    this.inputNames = Object.freeze(session.inputNames.filter((n) => !this.hiddenInputs.has(n)));
    this.outputNames = Object.freeze(session.outputNames.filter((n) => !this.hiddenOutputs.has(n)));
    this.groups = report.groups
      .filter((g) => g.inputs && g.outputs)
      .map((g) => ({
        id: g.id,
        blocks: g.blocks.length,
        destIn: g.inputs!.destinations,
        AIn: g.inputs!.weights,
        destOut: g.outputs!.destinations,
        AOut: g.outputs!.weights,
        R: g.regions,
        T: g.slots,
        n: g.regionSize,
        removed: 1 - g.K / g.N,
      }));
    this.patchedBlocks = report.blocks.filter((b) => b.patched).map((b) => b.name);
    this.denseBlocks = report.blocks.filter((b) => !b.patched && b.kind !== 'cross').length;
  }

  beginImage(): void {
    this.images++;
    this.step = 0;
    this.history = {};
    this.plans.clear();
    this.signature = '';
    this.actions = [];
  }

  async run(feeds: Record<string, OrtTensor>, options?: OrtRunOptions): Promise<Record<string, OrtTensor>> {
    if (this.released) throw new Error('run: the session was released');
    if (feeds === null || typeof feeds !== 'object' || Array.isArray(feeds))
      throw new TypeError(`feeds must be an object { inputName: Tensor }, got ${String(feeds)}`);
    for (const k of Object.keys(feeds))
      if (this.hiddenInputs.has(k)) throw new TypeError(`feeds.${k}: ${k} is toma's own plan input; the session feeds it`);
    if (this.busy) throw new Error('run: the previous run() has not finished; each run is one denoising step, await it first');
    this.busy = true;
    const t0 = performance.now();
    try {
      const all: Record<string, OrtTensor> = { ...feeds };
      let action: PlanAction = 'reuse';
      if (this.groups.length) {
        const sig = JSON.stringify(this.inputNames.map((n) => (feeds[n] as OrtTensor | undefined)?.dims ?? null));
        action = planAction(this.step, this.history, this.destinationInterval, this.weightInterval);
        // a plan is reused only with the input shapes it was made for
        if (action !== 'select' && (sig !== this.signature || this.groups.some((g) => !this.plans.has(g.id)))) action = 'select';
        const T = this.ort.Tensor;
        all[CONTROL_INPUT] = new T('int64', BigInt64Array.of(BigInt(RECOMPUTE[action])), []);
        for (const g of this.groups) {
          const p = this.plans.get(g.id);
          all[g.destIn] = action === 'select' ? new T('int64', new BigInt64Array(0), [0, g.R, g.T]) : p!.dest;
          all[g.AIn] = action === 'reuse' ? p!.A : new T('float32', new Float32Array(0), [0, g.R, g.T, g.n]);
        }
        this.signature = sig;
      }
      const t1 = performance.now();
      const out = await this.session.run(all, options ?? {});
      this.c.ortMs += performance.now() - t1;
      const result: Record<string, OrtTensor> = {};
      for (const k of Object.keys(out)) if (!this.hiddenOutputs.has(k)) result[k] = out[k];
      if (this.groups.length) {
        for (const g of this.groups) this.plans.set(g.id, { dest: out[g.destOut], A: out[g.AOut] });
        if (action === 'select') this.history = { selectedAt: this.step, weighedAt: this.step };
        else if (action === 'weights') this.history = { ...this.history, weighedAt: this.step };
        for (const g of this.groups) {
          if (action === 'select') this.c.plansComputed++;
          else if (action === 'weights') this.c.weightsRecomputed++;
          this.c.plansReused += g.blocks - (action === 'reuse' ? 0 : 1);
          this.c.blocksMerged += g.blocks;
          this.c.ratioSum += g.blocks * g.removed;
        }
        this.actions.push(action);
      }
      this.c.blocksDense += this.denseBlocks;
      this.step++;
      this.runs++;
      return result;
    } finally {
      this.c.totalMs += performance.now() - t0;
      this.busy = false;
    }
  }

  stats(): StandardOpsStats {
    const c = this.c;
    return {
      mode: 'standard-ops',
      patchedBlocks: [...this.patchedBlocks],
      step: this.step,
      runs: this.runs,
      ortMs: c.ortMs,
      tomaMs: 0,
      totalMs: c.totalMs,
      processor: {
        images: this.images,
        step: this.step,
        plansComputed: c.plansComputed,
        weightsRecomputed: c.weightsRecomputed,
        plansReused: c.plansReused,
        blocksMerged: c.blocksMerged,
        blocksDense: c.blocksDense,
        planMs: 0,
        attentionMs: 0,
        meanRatio: c.blocksMerged ? c.ratioSum / c.blocksMerged : 0,
      },
      actions: [...this.actions],
    };
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.plans.clear();
    await this.session.release();
  }
}
