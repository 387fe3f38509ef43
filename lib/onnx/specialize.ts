// Models exported with dynamic shapes (batch, latent size, text length) tell their token grids,
// token counts and prefix lengths only once the input shapes are known: a UNet's blocks each sit
// on their own grid, and which blocks are worth merging depends on how many tokens they see. A
// SpecializedSession builds the patched session for the shapes of the feeds it is given (shape
// inference with the inputs bound: every dim that follows from them by ONNX semantics becomes
// concrete) and keeps the last few such variants, so a denoising loop pays the build once.
// Models whose inputs are all static get their one variant at creation, so errors surface there.
import type { ValueInfoProto } from './gen/onnx_pb';
import { gridHints, type GridHints } from './grid';
import { matchAttention } from './matcher';
import type { OnnxModel } from './model';
import type { OrtRunOptions, OrtTensor, SessionStats, TomaSession } from './session-types';

/** Concrete input shapes, by graph input name. */
export type Bind = ReadonlyMap<string, readonly number[]>;

/**
 * Builds the session for one set of input shapes (undefined: the model's static shapes) and the
 * grids the feeds' position ids tell (grid.ts).
 */
export type VariantFactory<S extends TomaSession> = (bind: Bind | undefined, hints?: GridHints) => Promise<S>;

/** How many shape variants a session keeps (each holds onnxruntime sessions and their weights). */
export const MAX_VARIANTS = 2;

function declaredDims(v: ValueInfoProto): Array<number | undefined> | undefined {
  if (v.type?.value.case !== 'tensorType') return undefined;
  const shp = v.type.value.value.shape;
  if (!shp) return undefined;
  return shp.dim.map((d) => (d.value.case === 'dimValue' ? Number(d.value.value) : undefined));
}

/** The graph inputs a caller feeds (initializer-backed inputs are optional overrides). */
export function feedInputs(model: OnnxModel): ValueInfoProto[] {
  const g = model.proto.graph!;
  const inits = new Set(g.initializer.map((t) => t.name));
  return g.input.filter((v) => !inits.has(v.name));
}

/** True when every fed input has a fully static shape. */
export function isStatic(model: OnnxModel): boolean {
  return feedInputs(model).every((v) => {
    const d = declaredDims(v);
    return d !== undefined && d.every((x) => typeof x === 'number' && x >= 0);
  });
}

/**
 * Whether the patched session depends on the input shapes: some self- or joint-attention block's
 * token grid is unknown until they are bound (and options.grid does not give it). A dynamic batch
 * alone does not make a model depend on them.
 */
export function needsBinding(model: OnnxModel, userGrid?: [number, number]): boolean {
  if (isStatic(model)) return false;
  return matchAttention(model).blocks.some((b) => b.kind !== 'cross' && !b.grid && !userGrid);
}

/** The input shapes of one run, checked against the declared ranks and static dims. */
export function bindFeeds(model: OnnxModel, feeds: Record<string, OrtTensor>): Map<string, number[]> {
  const bind = new Map<string, number[]>();
  for (const v of feedInputs(model)) {
    const t = feeds[v.name];
    if (!t) continue;
    const dims = [...t.dims].map(Number);
    const declared = declaredDims(v);
    if (declared) {
      if (declared.length !== dims.length)
        throw new RangeError(`feeds.${v.name}: expected rank ${declared.length} ([${declared.map((d) => d ?? '?').join(', ')}]), got dims [${dims.join(', ')}]`);
      declared.forEach((d, i) => {
        if (d !== undefined && d !== dims[i])
          throw new RangeError(`feeds.${v.name}: dim ${i} must be ${d} ([${declared.map((x) => x ?? '?').join(', ')}]), got dims [${dims.join(', ')}]`);
      });
    }
    bind.set(v.name, dims);
  }
  return bind;
}

export interface SpecializedStats extends SessionStats {
  /** Shape variants built since the session was created. */
  variants: number;
}

/**
 * A TomaSession over per-input-shape variants. `stats()` reports the variant of the last run (or
 * the static variant); before the first run of a dynamic model it reports nothing patched yet.
 */
export class SpecializedSession<S extends TomaSession> implements TomaSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly variants = new Map<string, S>();
  private pending = new Map<string, Promise<S>>();
  private last?: S;
  private built = 0;
  private released = false;
  private busy = false;

  constructor(
    private readonly model: OnnxModel,
    private readonly factory: VariantFactory<S>,
    private readonly mode: SessionStats['mode'],
    staticVariant?: S,
  ) {
    const g = model.proto.graph!;
    // a static variant knows best (a patched model's own plan inputs are hidden from callers)
    this.inputNames = Object.freeze([...(staticVariant?.inputNames ?? feedInputs(model).map((v) => v.name))]);
    this.outputNames = Object.freeze([...(staticVariant?.outputNames ?? g.output.map((v) => v.name))]);
    if (staticVariant) {
      this.variants.set('static', staticVariant);
      this.last = staticVariant;
      this.built = 1;
    }
  }

  /** The variant used by the last run (the static one before any run), if any. */
  get current(): S | undefined {
    return this.last;
  }

  beginImage(): void {
    for (const v of this.variants.values()) v.beginImage();
  }

  async run(feeds: Record<string, OrtTensor>, options?: OrtRunOptions): Promise<Record<string, OrtTensor>> {
    if (this.released) throw new Error('session: run() after release()');
    if (feeds === null || typeof feeds !== 'object' || Array.isArray(feeds)) throw new TypeError('feeds must be an object { inputName: Tensor }');
    if (this.busy) throw new Error('session: run() while another run() of this session is in progress (each run() is one denoising step: await it)');
    this.busy = true;
    try {
      const v = await this.variantFor(feeds);
      this.last = v;
      return await v.run(feeds, options);
    } finally {
      this.busy = false;
    }
  }

  private async variantFor(feeds: Record<string, OrtTensor>): Promise<S> {
    const staticV = this.variants.get('static');
    if (staticV) return staticV;
    for (const k of this.inputNames) if (!(k in feeds)) throw new TypeError(`feeds: the model's input '${k}' is missing`);
    const bind = bindFeeds(this.model, feeds);
    const hints = gridHints(this.model, feeds);
    const key = JSON.stringify([[...bind].sort(([a], [b]) => (a < b ? -1 : 1)), [...hints].sort(([a], [b]) => a - b)]);
    const hit = this.variants.get(key);
    if (hit) {
      // most recently used last
      this.variants.delete(key);
      this.variants.set(key, hit);
      return hit;
    }
    let p = this.pending.get(key);
    if (!p) {
      p = this.factory(bind, hints);
      this.pending.set(key, p);
    }
    let v: S;
    try {
      v = await p;
    } finally {
      this.pending.delete(key);
    }
    this.built++;
    this.variants.set(key, v);
    while (this.variants.size > MAX_VARIANTS) {
      const [oldKey, old] = this.variants.entries().next().value as [string, S];
      this.variants.delete(oldKey);
      await old.release();
    }
    return v;
  }

  stats(): ReturnType<S['stats']> & SpecializedStats {
    const base = (this.last ? this.last.stats() : { mode: this.mode, patchedBlocks: [], step: 0, runs: 0, ortMs: 0, tomaMs: 0, totalMs: 0 }) as ReturnType<S['stats']>;
    return { ...base, variants: this.built };
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const all = [...this.variants.values()];
    this.variants.clear();
    for (const v of all) await v.release();
  }
}
