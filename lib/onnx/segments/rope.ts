// Segment mode for blocks with rotary embeddings: merge the *pre-rotation* q and k, then rotate each
// merged token with its destination's position (REFERENCE 1.4: a merged token takes its
// destination's rotary position, never an average), attend over the P + K tokens and unmerge.
//
// The piece before the cut hands over [q | rot(q) | k | rot(k) | v] ([B, T, 5C]) and cos/sin
// expanded to [B, T, C]. rot() is the graph's own rotate-half (whatever pairing it uses): it acts on
// channels, merging acts on tokens, so merge(rot(q)) = rot(merge(q)) and one merge of the packed
// tensor gives everything; the rotation is then q~ * cos[pos] + rot(q)~ * sin[pos].
//
// The processor cannot expose its plans, so this keeps its own plan cache with the processor's
// exact schedule (planAction), groups, ratios and methods, from the processor's resolved options.
import { performance } from 'node:perf_hooks';

import { assignmentPlan, attention, computePlan, merge, tomesdPlan, unmerge, type Plan } from '../../ops';
import { todoAssignment } from '../../processor/baselines';
import { checkRatio, type ResolvedOptions } from '../../processor/options';
import type { ProcessorStats } from '../../processor/processor';
import { planAction, type GroupHistory } from '../../processor/schedule';
import { fromFloat32, toFloat32 } from '../../tensor';
import type { Tensor } from '../../types';

export interface RopeCall {
  block: string;
  grid: [number, number];
  heads: number;
  prefix: number;
  scale: number;
}

interface GroupState extends GroupHistory {
  plan?: Promise<Plan>;
}

function f32(t: Tensor): Float32Array {
  if (t.dtype !== 'float32') throw new TypeError(`segments: RoPE blocks run in float32, got ${t.dtype}`);
  return t.data as Float32Array;
}

/**
 * Rotates the rows of a packed [B, rows, 5C] tensor ([q | rot q | k | rot k | v]): q = q*cos +
 * rot(q)*sin with the tables' row at each row's position; tables are [B, T, W], W = C or the head size.
 */
function rotate(
  packed: Float32Array,
  rows: number,
  C: number,
  B: number,
  cos: Float32Array,
  sin: Float32Array,
  T: number,
  W: number,
  position: (b: number, row: number) => number,
  withQ: boolean,
): { q?: Float32Array; k: Float32Array; v: Float32Array } {
  const q = withQ ? new Float32Array(B * rows * C) : undefined;
  const k = new Float32Array(B * rows * C);
  const v = new Float32Array(B * rows * C);
  const P5 = 5 * C;
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < rows; r++) {
      const src = (b * rows + r) * P5;
      const dst = (b * rows + r) * C;
      const tab = (b * T + position(b, r)) * W;
      for (let c = 0, t = 0; c < C; c++, t = t + 1 === W ? 0 : t + 1) {
        const cs = cos[tab + t];
        const sn = sin[tab + t];
        if (q) q[dst + c] = packed[src + c] * cs + packed[src + C + c] * sn;
        k[dst + c] = packed[src + 2 * C + c] * cs + packed[src + 3 * C + c] * sn;
        v[dst + c] = packed[src + 4 * C + c];
      }
    }
  }
  return { q, k, v };
}

export class RopeAttention {
  private groups = new Map<string, GroupState>();
  private images = 0;
  private c = { plansComputed: 0, weightsRecomputed: 0, plansReused: 0, blocksMerged: 0, blocksDense: 0, planMs: 0, attentionMs: 0, ratioSum: 0 };

  constructor(private readonly o: Readonly<ResolvedOptions>) {}

  beginImage(): void {
    this.images++;
    this.groups.clear();
  }

  stats(): Omit<ProcessorStats, 'images' | 'step'> & { ratioSum: number } {
    const c = this.c;
    return { ...c, meanRatio: c.blocksMerged ? c.ratioSum / c.blocksMerged : 0 };
  }

  private ratioOf(block: string): number | { similarity: number } {
    if (this.o.isDense(block)) return 0;
    const r = this.o.ratio;
    if (typeof r === 'function') return checkRatio(r(block), `options.ratio('${block}')`, this.o.maxRatio);
    return r;
  }

  /**
   * packed [B, T, 5C] (T = P + N), cos/sin [B, T, C], x: selection tokens [B, T, C'] (default: the
   * pre-rotation k). Returns the attention output [B, T, C] before the output projection.
   */
  async run(step: number, packedIn: Tensor, cosIn: Tensor, sinIn: Tensor, xIn: Tensor | undefined, call: RopeCall): Promise<Tensor> {
    // half-precision models (fp16 exports): the rotation and attention run in float32, as the
    // graph's own x.float() * cos does, and the result goes back in the model's dtype
    const dtype = packedIn.dtype;
    const wide = (t: Tensor): Tensor => (t.dtype === 'float32' ? t : { data: toFloat32(t), shape: t.shape, dtype: 'float32' });
    const out = await this.runFloat32(step, wide(packedIn), wide(cosIn), wide(sinIn), xIn && wide(xIn), call);
    return dtype === 'float32' ? out : fromFloat32(out.data as Float32Array, out.shape, dtype);
  }

  private async runFloat32(step: number, packedT: Tensor, cosT: Tensor, sinT: Tensor, xT: Tensor | undefined, call: RopeCall): Promise<Tensor> {
    const [B, T, C5] = packedT.shape;
    const C = C5 / 5;
    const packed = f32(packedT);
    const cos = f32(cosT);
    const sin = f32(sinT);
    const { heads, scale, prefix: P } = call;
    // [B, T, d] (shared by the heads) or [B, T, C]
    const W = cosT.shape[2];
    if (cosT.shape.length !== 3 || cosT.shape[0] !== B || cosT.shape[1] !== T || (W !== C && W !== C / heads) || sinT.shape.join() !== cosT.shape.join())
      throw new RangeError(`segments: RoPE tables of shape [${cosT.shape}] / [${sinT.shape}] do not cover [${B}, ${T}, ${C}] with ${heads} heads`);
    const ratio = this.ratioOf(call.block);
    const backend = this.o.backend;
    if (ratio === 0) {
      this.c.blocksDense++;
      const t0 = performance.now();
      const { q, k, v } = rotate(packed, T, C, B, cos, sin, T, W, (_b, r) => r, true);
      const out = await attention(
        { data: q!, shape: [B, T, C], dtype: 'float32' },
        { data: k, shape: [B, T, C], dtype: 'float32' },
        { data: v, shape: [B, T, C], dtype: 'float32' },
        { heads, scale, backend },
      );
      this.c.attentionMs += performance.now() - t0;
      return out;
    }
    const grid = call.grid;
    const groupName = this.o.group(call.block, { grid, channels: C });
    if (typeof groupName !== 'string') throw new TypeError(`options.group('${call.block}') must return a string`);
    const key = `${groupName}|${JSON.stringify(ratio)}|${B}|${P}|${grid}`;
    let g = this.groups.get(key);
    if (!g) this.groups.set(key, (g = {}));
    const action = planAction(step, g, this.o.destinationInterval, this.o.weightInterval);
    const x: Tensor = xT ?? { data: sliceChannels(packed, B * T, C5, 2 * C, C), shape: [B, T, C], dtype: 'float32' };
    const t0 = performance.now();
    if (action === 'select' || (this.o.method === 'tomesd' && action === 'weights')) {
      g.plan = this.newPlan(x, grid, P, ratio, B, step);
      g.selectedAt = g.weighedAt = step;
      this.c.plansComputed++;
    } else if (action === 'weights' && this.o.method === 'toma') {
      const prev = g.plan!;
      g.plan = prev.then((p) => computePlan(x, { ...this.planOptions(grid, P, ratio), ratio: p.ratio, destinations: p.destinations, backend }));
      g.weighedAt = step;
      this.c.weightsRecomputed++;
    } else {
      this.c.plansReused++;
    }
    let plan: Plan;
    try {
      plan = await g.plan!;
    } catch (e) {
      this.groups.delete(key);
      throw e;
    }
    const t1 = performance.now();
    this.c.planMs += t1 - t0;
    const removed = 1 - plan.K / plan.N;
    if (typeof ratio === 'object' && removed > this.o.maxRatio)
      throw new RangeError(`block '${call.block}': the plan removes ${removed.toFixed(3)} of the tokens, above options.maxRatio = ${this.o.maxRatio}`);

    const K = plan.K;
    const R = P + K;
    const dst = plan.destinations;
    const dOff = (b: number) => (dst.length === K ? 0 : b * K);
    const merged = await merge(packedT, plan, { backend });
    const mp = merged.data as Float32Array;
    const at = (b: number, r: number) => (r < P ? r : P + dst[dOff(b) + r - P]);
    let out: Tensor;
    if (this.o.method === 'todo') {
      // ToDo: every query stays (rotated at its own position); keys and values are merged.
      const own = rotate(packed, T, C, B, cos, sin, T, W, (_b, r) => r, true);
      const kv = rotate(mp, R, C, B, cos, sin, T, W, at, false);
      out = await attention(
        { data: own.q!, shape: [B, T, C], dtype: 'float32' },
        { data: kv.k, shape: [B, R, C], dtype: 'float32' },
        { data: kv.v, shape: [B, R, C], dtype: 'float32' },
        { heads, scale, backend },
      );
    } else {
      const { q, k, v } = rotate(mp, R, C, B, cos, sin, T, W, at, true);
      const o = await attention(
        { data: q!, shape: [B, R, C], dtype: 'float32' },
        { data: k, shape: [B, R, C], dtype: 'float32' },
        { data: v, shape: [B, R, C], dtype: 'float32' },
        { heads, scale, backend },
      );
      out = await unmerge(o, plan, { backend });
    }
    this.c.attentionMs += performance.now() - t1;
    this.c.blocksMerged++;
    this.c.ratioSum += removed;
    return out;
  }

  private planOptions(grid: [number, number], prefix: number, ratio: number | { similarity: number }) {
    const o = this.o;
    return {
      grid,
      prefix,
      region: o.region,
      tau: o.tau,
      shareBatch: o.shareBatch,
      ...(typeof ratio === 'number' ? { ratio } : { ratio: 0, similarity: ratio.similarity }),
    };
  }

  private newPlan(x: Tensor, grid: [number, number], prefix: number, ratio: number | { similarity: number }, B: number, step: number): Promise<Plan> {
    const o = this.o;
    if (o.method === 'toma') return computePlan(x, { ...this.planOptions(grid, prefix, ratio), backend: o.backend });
    const r = ratio as number;
    if (o.method === 'tomesd')
      return tomesdPlan(x, {
        grid,
        ratio: r,
        prefix,
        random: o.seed !== false,
        seed: o.seed === false ? 0 : (o.seed + step * 7919 + this.images * 104729) % 2 ** 31,
      });
    const { assignment, K } = todoAssignment(B, grid[0], grid[1], r);
    return assignmentPlan(assignment, { grid, K, prefix });
  }
}

function sliceChannels(src: Float32Array, rows: number, width: number, from: number, count: number): Float32Array {
  const out = new Float32Array(rows * count);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * width + from, r * width + from + count), r * count);
  return out;
}
