// The drop-in attention processor: per block and per step it decides whether to merge, computes
// or reuses plans on the reuse schedule, and runs merge-attention-unmerge on the active backend.
import { performance } from 'node:perf_hooks';

import { assignmentPlan, attention, computePlan, mergeAttentionUnmerge, tomesdPlan, type Plan } from '../ops';
import type { Tensor } from '../types';
import { todoAssignment } from './baselines';
import { checkRatio, resolveOptions, type ProcessorOptions, type ResolvedOptions } from './options';
import { planAction, type GroupHistory, type PlanAction } from './schedule';

export type { ProcessorOptions } from './options';

export interface ProcessorCall {
  /** The block's name, e.g. 'down.1.attn1'. */
  block: string;
  /** [H, W] of the image tokens. */
  grid: [number, number];
  heads: number;
  /** Tokens in front of the image tokens that are never merged (Flux text). Default 0. */
  prefix?: number;
  scale?: number;
  /** Tokens to select destinations on (the block input, say). Default: k. */
  x?: Tensor;
}

export interface ProcessorStats {
  images: number;
  step: number;
  /** Destination selections (each also computes weights). */
  plansComputed: number;
  /** Weight recomputations that kept the destinations. */
  weightsRecomputed: number;
  /** Merged blocks that used their group's plan unchanged. */
  plansReused: number;
  blocksMerged: number;
  blocksDense: number;
  planMs: number;
  attentionMs: number;
  /** Mean fraction of image tokens removed over merged blocks (the adaptive mode's result). */
  meanRatio: number;
}

export interface Processor {
  readonly options: Readonly<ResolvedOptions>;
  beginImage(): void;
  beginStep(step: number): void;
  attention(q: Tensor, k: Tensor, v: Tensor, call: ProcessorCall): Promise<Tensor>;
  stats(): ProcessorStats;
}

interface GroupState extends GroupHistory {
  plan?: Promise<Plan>;
  key?: string;
}

function shapeOf(t: Tensor, name: string): [number, number, number] {
  if (t === null || typeof t !== 'object' || !Array.isArray(t.shape) || t.shape.length !== 3)
    throw new TypeError(`${name} must be a tensor { data, shape: [B, T, C], dtype }${t !== null && typeof t === 'object' ? `: ${name}.shape is not [B, T, C]` : ''}`);
  return t.shape as [number, number, number];
}

class TomaProcessor implements Processor {
  readonly options: Readonly<ResolvedOptions>;
  private step = 0;
  private images = 0;
  private groups = new Map<string, GroupState>();
  private counters = {
    plansComputed: 0,
    weightsRecomputed: 0,
    plansReused: 0,
    blocksMerged: 0,
    blocksDense: 0,
    planMs: 0,
    attentionMs: 0,
    ratioSum: 0,
  };

  constructor(o: ProcessorOptions) {
    this.options = resolveOptions(o);
  }

  beginImage(): void {
    this.images++;
    this.step = 0;
    this.groups.clear();
  }

  beginStep(step: number): void {
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 0)
      throw new RangeError(`step must be an integer >= 0, got ${String(step)}`);
    this.step = step;
  }

  stats(): ProcessorStats {
    const c = this.counters;
    return {
      images: this.images,
      step: this.step,
      plansComputed: c.plansComputed,
      weightsRecomputed: c.weightsRecomputed,
      plansReused: c.plansReused,
      blocksMerged: c.blocksMerged,
      blocksDense: c.blocksDense,
      planMs: c.planMs,
      attentionMs: c.attentionMs,
      meanRatio: c.blocksMerged ? c.ratioSum / c.blocksMerged : 0,
    };
  }

  private blockRatio(block: string): number | { similarity: number } {
    const r = this.options.ratio;
    if (typeof r === 'function') return checkRatio(r(block), `options.ratio('${block}')`, this.options.maxRatio);
    return r;
  }

  async attention(q: Tensor, k: Tensor, v: Tensor, call: ProcessorCall): Promise<Tensor> {
    if (call === null || typeof call !== 'object') throw new TypeError('call must be an object { block, grid, heads, ... }');
    if (typeof call.block !== 'string' || call.block === '')
      throw new TypeError(`call.block must be a non-empty string, got ${String(call.block)}`);
    const [B, , C] = shapeOf(q, 'q');
    const o = this.options;
    const backend = o.backend;
    const ratio = o.isDense(call.block) ? 0 : this.blockRatio(call.block);
    if (ratio === 0) {
      this.counters.blocksDense++;
      const t0 = performance.now();
      const out = await attention(q, k, v, { heads: call.heads, scale: call.scale, backend });
      this.counters.attentionMs += performance.now() - t0;
      return out;
    }
    const prefix = call.prefix ?? 0;
    const grid = call.grid;
    // Checked here because the plan key below stringifies them (a Symbol would throw unnamed).
    if (!Array.isArray(grid) || grid.length !== 2 || typeof grid[0] !== 'number' || typeof grid[1] !== 'number')
      throw new TypeError(`call.grid must be [H, W] (two numbers), got ${Array.isArray(grid) ? `an array of length ${grid.length}` : typeof grid}`);
    if (!grid.every((d) => Number.isInteger(d) && d >= 1 && d <= 65536))
      throw new RangeError(`call.grid must be [H, W] with integers in [1, 65536], got [${grid.map(String).join(', ')}]`);
    if (typeof prefix !== 'number') throw new TypeError(`call.prefix must be an integer >= 0, got ${typeof prefix}`);
    const groupName = o.group(call.block, { grid, channels: C });
    if (typeof groupName !== 'string') throw new TypeError(`options.group('${call.block}') must return a string`);
    // Plans are shared only between calls they fit.
    const key = `${groupName}|${JSON.stringify(ratio)}|${B}|${prefix}|${grid}`;
    let g = this.groups.get(key);
    if (!g) this.groups.set(key, (g = {}));
    const action: PlanAction = planAction(this.step, g, o.destinationInterval, o.weightInterval);
    const x = call.x ?? k;
    const t0 = performance.now();
    if (action === 'select' || o.method === 'tomesd' && action === 'weights') {
      g.plan = this.newPlan(x, grid, prefix, ratio, B);
      g.selectedAt = g.weighedAt = this.step;
      this.counters.plansComputed++;
    } else if (action === 'weights' && o.method === 'toma') {
      const prev = g.plan!;
      g.plan = prev.then((p) =>
        computePlan(x, { ...this.planOptions(grid, prefix, ratio), ratio: p.ratio, destinations: p.destinations, backend }),
      );
      g.weighedAt = this.step;
      this.counters.weightsRecomputed++;
    } else {
      this.counters.plansReused++;
    }
    let plan: Plan;
    try {
      plan = await g.plan!;
    } catch (e) {
      this.groups.delete(key); // a failed plan is not reused
      throw e;
    }
    const t1 = performance.now();
    this.counters.planMs += t1 - t0;
    const removed = 1 - plan.K / plan.N;
    // Numeric ratios were checked against maxRatio already; the realised fraction differs from
    // them only by SPEC 3's rounding. The adaptive mode has no ratio to check beforehand.
    if (typeof ratio === 'object' && removed > o.maxRatio)
      throw new RangeError(`block '${call.block}': the plan removes ${removed.toFixed(3)} of the tokens, above options.maxRatio = ${o.maxRatio}`);
    const out = await mergeAttentionUnmerge(q, k, v, plan, {
      heads: call.heads,
      scale: call.scale,
      mergeQueries: o.method !== 'todo',
      proportional: o.proportional,
      backend,
    });
    this.counters.attentionMs += performance.now() - t1;
    this.counters.blocksMerged++;
    this.counters.ratioSum += removed;
    return out;
  }

  private planOptions(grid: [number, number], prefix: number, ratio: number | { similarity: number }) {
    const o = this.options;
    return {
      grid,
      prefix,
      region: o.region,
      tau: o.tau,
      shareBatch: o.shareBatch,
      ...(typeof ratio === 'number' ? { ratio } : { ratio: 0, similarity: ratio.similarity }),
    };
  }

  private newPlan(x: Tensor, grid: [number, number], prefix: number, ratio: number | { similarity: number }, B: number) {
    const o = this.options;
    if (o.method === 'toma') return computePlan(x, { ...this.planOptions(grid, prefix, ratio), backend: o.backend });
    const r = ratio as number;
    if (o.method === 'tomesd')
      return tomesdPlan(x, {
        grid,
        ratio: r,
        prefix,
        random: o.seed !== false,
        seed: o.seed === false ? 0 : (o.seed + this.step * 7919 + this.images * 104729) % 2 ** 31,
      });
    // The assignment is built here, before the addon sees x: bound its size by x's data first.
    const len = ArrayBuffer.isView(x?.data) ? (x.data as ArrayLike<number>).length : 0;
    if (!(B * grid[0] * grid[1] <= len))
      throw new RangeError(
        `call.grid ${JSON.stringify(grid)} with batch ${B} needs ${B * grid[0] * grid[1]} image tokens, more than x.data (call.x or k.data) holds (${len} values)`,
      );
    const { assignment, K } = todoAssignment(B, grid[0], grid[1], r);
    return assignmentPlan(assignment, { grid, K, prefix });
  }
}

/** A processor for one diffusion model run (see ProcessorOptions); call beginImage() per image. */
export function createProcessor(options: ProcessorOptions): Processor {
  return new TomaProcessor(options);
}
