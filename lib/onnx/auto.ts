// mode 'auto' (createSession's default): each model runs in the mode the payoff estimate says is
// faster for it (payoff.ts chooseMode). Segment mode runs toma's own attention kernel between
// graph pieces; standard-ops runs the merged attention inside onnxruntime with no cuts, which
// wins where heads are small and blocks many. A model whose grids wait for its input shapes
// decides at its first run(), with those shapes; the choice then holds for the session.
import { resolveGrid, type GridHints, gridHints } from './grid';
import { matchAttention } from './matcher';
import { readModel, type OnnxModel } from './model';
import { chooseMode, ratioFor, type PolicyBlock } from './payoff';
import { bindFeeds, feedInputs, needsBinding, type Bind } from './specialize';
import type { OrtRunOptions, OrtSessionOptions, OrtTensor, PatchMode, SessionOptions, SessionStats, TomaSession } from './session-types';

type Factory = (path: string, options: SessionOptions, ortOptions?: OrtSessionOptions) => Promise<TomaSession>;

/** The blocks as the payoff estimate sees them, at the given input shapes. */
function policyBlocks(model: OnnxModel, userGrid: [number, number] | undefined, bind?: Bind, hints?: GridHints): PolicyBlock[] {
  return matchAttention(model, bind).blocks.map((b) => {
    const grid = resolveGrid(b, userGrid, hints).grid;
    const N = grid ? grid[0] * grid[1] : 0;
    const text = b.kind === 'joint' ? (b.prefix ?? 0) + (b.suffix ?? 0) : typeof b.tokens === 'number' ? Math.max(0, b.tokens - N) : 0;
    return {
      name: b.name,
      kind: b.kind,
      grid: b.patchable ? grid : undefined,
      batch: b.batch,
      text,
      channels: b.channels,
      heads: b.heads,
      fused: b.form !== 'matmul-softmax',
      rope: !!b.boundaries.q.rope,
    };
  });
}

export interface AutoStats extends SessionStats {
  /** What mode 'auto' chose, and the estimated saving per run (ms) of each mode. */
  auto?: { mode: PatchMode; savedMs: Record<PatchMode, number> };
}

export class AutoSession implements TomaSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private inner?: TomaSession;
  private building?: Promise<TomaSession>;
  private choice?: AutoStats['auto'];
  private released = false;
  private imageBegun = false;

  private constructor(
    private readonly path: string,
    private readonly model: OnnxModel,
    private readonly options: SessionOptions,
    private readonly ortOptions: OrtSessionOptions | undefined,
    private readonly factories: Record<PatchMode, Factory>,
  ) {
    this.inputNames = Object.freeze(feedInputs(model).map((v) => v.name));
    this.outputNames = Object.freeze(model.proto.graph!.output.map((v) => v.name));
  }

  /** The mode chosen (undefined until a model that waits for its input shapes has run). */
  get mode(): PatchMode | undefined {
    return this.choice?.mode;
  }

  static async create(path: string, options: SessionOptions, ortOptions: OrtSessionOptions | undefined, factories: Record<PatchMode, Factory>): Promise<TomaSession> {
    const model = await readModel(path);
    const s = new AutoSession(path, model, options, ortOptions, factories);
    if (!needsBinding(model, options.grid)) await s.decide(undefined, undefined);
    return s;
  }

  private async decide(bind: Bind | undefined, hints: GridHints | undefined): Promise<TomaSession> {
    const blocks = policyBlocks(this.model, this.options.grid, bind, hints);
    const choice = chooseMode(blocks, (b) => ratioFor(this.options.ratio, b));
    this.choice = choice;
    this.inner = await this.factories[choice.mode](this.path, { ...this.options, mode: choice.mode }, this.ortOptions);
    return this.inner;
  }

  /** The standard-ops rewrite's report, when that mode was chosen (its type: standard-ops' PatchReport). */
  get report(): unknown {
    return (this.inner as { report?: unknown } | undefined)?.report;
  }

  beginImage(): void {
    this.imageBegun = true;
    this.inner?.beginImage();
  }

  async run(feeds: Record<string, OrtTensor>, options?: OrtRunOptions): Promise<Record<string, OrtTensor>> {
    if (this.released) throw new Error('session: run() after release()');
    if (feeds === null || typeof feeds !== 'object' || Array.isArray(feeds)) throw new TypeError('feeds must be an object { inputName: Tensor }');
    if (!this.inner) {
      for (const k of this.inputNames) if (!(k in feeds)) throw new TypeError(`feeds: the model's input '${k}' is missing`);
      this.building ??= this.decide(bindFeeds(this.model, feeds), gridHints(this.model, feeds)).finally(() => (this.building = undefined));
      await this.building;
      if (this.imageBegun) this.inner!.beginImage();
    }
    return this.inner!.run(feeds, options);
  }

  stats(): AutoStats {
    const base = this.inner?.stats() ?? { mode: 'segments' as PatchMode, patchedBlocks: [], step: 0, runs: 0, ortMs: 0, tomaMs: 0, totalMs: 0 };
    return { ...base, ...(this.choice ? { auto: this.choice } : {}) };
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.inner?.release();
  }
}
