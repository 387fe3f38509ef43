// ToMA (SPEC sections 2-5) written in standard ONNX operators. Tensors in the padded region layout
// of layout.ts:
//   xr   [B, R, nmax, C]  tokens gathered by region (Gather by a constant permutation + Reshape)
//   u    [B, R, nmax, C]  x / max(||x||, 1e-6)              (Mul, ReduceSum, Sqrt, Max, Div)
//   S    [Bs, R, nmax, nmax] cosine similarities, padded rows zeroed  (Transpose, MatMul, Mul)
//   dest [Bs, R, T] int64  destination positions inside each region, ascending in the first k_r
//                         slots (greedy: ReduceSum/Relu/Sub/Where/ArgMax/Equal/Or/MatMul/Max,
//                         unrolled or as a Loop; then TopK + GatherElements to sort)
//   A    [B, R, T, nmax]  A[d, s] = softmax_d(tau * u_d . u_s) (Softmax over axis -2), or the
//                         hard one-hot argmax (ArgMax + Equal); unused slots and padding are zero
//   M = A / rowsum(A), U = A^T; merge = M @ xr, unmerge = U @ yr, with constant Gathers between
//   the padded and the compact [B, K, C] / [B, N, C] layouts.
// Bs is 1 with shareBatch (destinations from batch element 0), else B.
import type { Region } from '../../types';
import { DT, GraphBuilder, valueInfo, type ElemType } from './builder';
import { regionLayout, type RegionLayout } from './layout';

/** A large negative that never wins an ArgMax or survives a Softmax, and stays finite. */
const NEG = -1e30;
/** Added to the sort key of unused destination slots so they sort last. */
const SLOT_PENALTY = 1e7;

export type GreedyForm = 'unrolled' | 'loop';

export interface TomaGraphOptions {
  grid: [number, number];
  ratio: number;
  region?: Region;
  tau?: number;
  shareBatch?: boolean;
  /** 'auto' (default): unrolled up to `unrollLimit` greedy steps, a Loop above. */
  greedy?: GreedyForm | 'auto';
  unrollLimit?: number;
  /**
   * Float type of the plan computation (norms, similarities, gains, weights). 'float64' (default)
   * reproduces the native plans exactly, ties included: facility-location gains are often tied in
   * exact arithmetic (two tokens that are each other's only cover), and the native code resolves
   * them on exactly symmetric float32 similarities with float64 gains, as done here. 'float32'
   * suits execution providers without double kernels (WebGPU); ties may then resolve otherwise.
   */
  precision?: 'float64' | 'float32';
}

export interface TomaSpec {
  layout: RegionLayout;
  tau: number;
  hard: boolean;
  /** ratio 0: the identity plan (SPEC 3), no selection at all. */
  identity: boolean;
  shareBatch: boolean;
  greedy: GreedyForm;
  /** DOUBLE or FLOAT: the plan's float type. */
  ft: ElemType;
}

export const DEFAULT_REGION: Region = { kind: 'tile', th: 4, tw: 4 };
export const DEFAULT_UNROLL_LIMIT = 32;

export function tomaSpec(o: TomaGraphOptions): TomaSpec {
  const region = o.region ?? DEFAULT_REGION;
  const layout = regionLayout(o.grid, region, o.ratio);
  const tau = o.tau ?? 1000;
  if (typeof tau !== 'number' || !(tau > 0)) throw new RangeError(`tau must be > 0 (Infinity for the hard plan), got ${String(tau)}`);
  const limit = o.unrollLimit ?? DEFAULT_UNROLL_LIMIT;
  const greedy = o.greedy && o.greedy !== 'auto' ? o.greedy : layout.T - 1 <= limit ? 'unrolled' : 'loop';
  const precision = o.precision ?? 'float64';
  if (precision !== 'float64' && precision !== 'float32')
    throw new RangeError(`precision must be 'float64' or 'float32', got ${String(precision)}`);
  const ft = precision === 'float64' ? DT.DOUBLE : DT.FLOAT;
  return { layout, tau, hard: !Number.isFinite(tau), identity: o.ratio === 0, shareBatch: !!o.shareBatch, greedy, ft };
}

/** The plan tensors of one group, as they cross steps. */
export interface PlanTensors {
  /** [Bs, R, T] int64 destination positions inside each region. */
  dest: string;
  /** [B, R, T, nmax] float merge weights before normalisation. */
  A: string;
}

/** What merge/unmerge need, computed once per group and step. */
export interface MergeMatrices {
  /** [B|1, R, T, nmax] in the model's dtype. */
  M: string;
  /** [B|1, R, nmax, T] in the model's dtype. */
  U: string;
}

export class TomaEmitter {
  constructor(
    readonly b: GraphBuilder,
    readonly spec: TomaSpec,
  ) {}

  private get L(): RegionLayout {
    return this.spec.layout;
  }

  // ----------------------------------------------------------------------------------------
  // layout

  /** [B, N, C] -> [B, R, nmax, C]. */
  regionGather(x: string, b = this.b): string {
    const L = this.L;
    let t = x;
    if (!L.permIdentity) t = b.op('Gather', [t, b.i64(L.perm, [L.R * L.nmax], 'region_perm')], { axis: 1 });
    return b.op('Reshape', [t, b.i64([0, L.R, L.nmax, -1], [4], 'shape')]);
  }

  /** [B, R, nmax, C] -> [B, N, C]. */
  regionScatter(xr: string, b = this.b): string {
    const L = this.L;
    let t = b.op('Reshape', [xr, b.i64([0, L.R * L.nmax, -1], [3], 'shape')]);
    if (!L.permIdentity) t = b.op('Gather', [t, b.i64(L.inv, [L.N], 'region_inv')], { axis: 1 });
    return t;
  }

  private get ft(): ElemType {
    return this.spec.ft;
  }

  /** x / max(||x||_2, 1e-6) along the last axis, in the plan's float type. */
  normalize(xr: string, dtype: ElemType, b = this.b): string {
    const x = dtype === this.ft ? xr : b.op('Cast', [xr], { to: this.ft });
    const ss = b.op('ReduceSum', [b.op('Mul', [x, x]), b.i64([-1], [1], 'axes')], { keepdims: 1 });
    const nrm = b.op('Max', [b.op('Sqrt', [ss]), b.real(this.ft, [1e-6], [], 'eps')]);
    return b.op('Div', [x, nrm]);
  }

  // ----------------------------------------------------------------------------------------
  // selection (SPEC 4)

  /** Greedy facility location per region on u [Bs, R, nmax, C]; returns dest [Bs, R, T] int64. */
  select(u: string, b = this.b): string {
    const L = this.L;
    const n = L.nmax;
    const T = L.T;
    const ft = this.ft;
    const uT = b.op('Transpose', [u], { perm: [0, 1, 3, 2] });
    let S = b.op('MatMul', [u, uT]);
    // Exactly symmetric, and rounded to float32 like the native similarities: gains that tie in
    // exact arithmetic then tie here too and go to the lowest index, as in the native code.
    S = b.op('Mul', [b.op('Add', [S, b.op('Transpose', [S], { perm: [0, 1, 3, 2] })]), b.real(ft, [0.5], [], 'half')]);
    if (ft !== DT.FLOAT) S = b.op('Cast', [b.op('Cast', [S], { to: DT.FLOAT })], { to: ft });
    // padded rows contribute nothing to any column sum or gain
    if (!L.unpadded) S = b.op('Mul', [S, b.real(ft, L.srcValid, [L.R, n, 1], 'src_valid_rows')]);
    const arange = b.i64(range(n), [n], 'arange');
    const neg = b.real(ft, [NEG], [], 'neg');
    const padMask = L.unpadded ? undefined : b.bool(L.srcValid.map((v) => 1 - v), [L.R, n], 'pad_mask');
    const axesRows = b.i64([-2], [1], 'axes');
    const axesLast = b.i64([-1], [1], 'axes');

    // first pick: argmax_j sum_i s_ij
    const colsum = b.op('ReduceSum', [S, axesRows], { keepdims: 0 });
    const score0 = padMask ? b.op('Where', [padMask, neg, colsum]) : colsum;
    const j0 = b.op('ArgMax', [score0], { axis: -1, keepdims: 1, select_last_index: 0 });
    const eq0 = b.op('Equal', [j0, arange]);
    const m0 = b.op('MatMul', [S, b.op('Unsqueeze', [b.op('Cast', [eq0], { to: ft }), axesLast])]);
    const blocked0 = padMask ? b.op('Or', [eq0, padMask]) : eq0;

    // one greedy step: gains, masked argmax, update of m and of the taken set
    const step = (bb: GraphBuilder, m: string, blocked: string) => {
      const gains = bb.op('ReduceSum', [bb.op('Relu', [bb.op('Sub', [S, m])]), axesRows], { keepdims: 0 });
      const j = bb.op('ArgMax', [bb.op('Where', [blocked, neg, gains])], { axis: -1, keepdims: 1, select_last_index: 0 });
      const eq = bb.op('Equal', [j, arange]);
      const col = bb.op('MatMul', [S, bb.op('Unsqueeze', [bb.op('Cast', [eq], { to: ft }), axesLast])]);
      return { j, m: bb.op('Max', [m, col]), blocked: bb.op('Or', [blocked, eq]) };
    };

    let picks: string;
    if (T === 1) {
      picks = j0;
    } else if (this.spec.greedy === 'unrolled') {
      const js = [j0];
      let m = m0;
      let blocked = blocked0;
      for (let t = 1; t < T; t++) {
        const r = step(b, m, blocked);
        js.push(r.j);
        m = r.m;
        blocked = r.blocked;
      }
      picks = b.op('Concat', js, { axis: -1 });
    } else {
      const body = b.sub(`${b.scope}/greedy_loop`);
      const iter = body.fresh('iter');
      const condIn = body.fresh('cond_in');
      const mIn = body.fresh('m_in');
      const blockedIn = body.fresh('blocked_in');
      const r = step(body, mIn, blockedIn);
      const condOut = body.op('Identity', [condIn]);
      const g = body.graph(
        body.fresh('body'),
        [valueInfo(condOut, DT.BOOL, []), valueInfo(r.m, ft), valueInfo(r.blocked, DT.BOOL), valueInfo(r.j, DT.INT64)],
        [valueInfo(iter, DT.INT64, []), valueInfo(condIn, DT.BOOL, []), valueInfo(mIn, ft), valueInfo(blockedIn, DT.BOOL)],
      );
      const [, , stacked] = b.node('Loop', [b.scalarI64(T - 1, 'trips'), '', m0, blocked0], { body: g }, 3);
      // [T-1, Bs, R, 1] -> [Bs, R, T-1]
      const moved = b.op('Transpose', [stacked], { perm: [1, 2, 0, 3] });
      const rest = b.op('Reshape', [moved, b.i64([0, 0, -1], [3], 'shape')]);
      picks = b.op('Concat', [j0, rest], { axis: -1 });
    }
    if (T === 1) return picks;
    // ascending positions in the k_r used slots; unused slots (t >= k_r) sort last
    let key = b.op('Cast', [picks], { to: DT.FLOAT });
    if (!L.slotsIdentity) key = b.op('Add', [key, b.f32(L.slotValid.map((v) => (1 - v) * SLOT_PENALTY), [L.R, T], 'slot_penalty')]);
    const [, order] = b.node('TopK', [key, b.i64([T], [1], 'k')], { axis: -1, largest: 0, sorted: 1 }, 2);
    return b.op('GatherElements', [picks, order], { axis: -1 });
  }

  // ----------------------------------------------------------------------------------------
  // weights (SPEC 5)

  /** A [B, R, T, nmax] (float32) from u [B, R, nmax, C] and dest [Bs, R, T]. */
  weights(u: string, dest: string, b = this.b): string {
    const L = this.L;
    const n = L.nmax;
    const T = L.T;
    const ft = this.ft;
    const isDest = b.op('Equal', [b.op('Unsqueeze', [dest, b.i64([-1], [1], 'axes')]), b.i64(range(n), [n], 'arange')]); // [Bs,R,T,n]
    const ud = b.op('MatMul', [b.op('Cast', [isDest], { to: ft }), u]); // [B,R,T,C]
    const cs = b.op('MatMul', [ud, b.op('Transpose', [u], { perm: [0, 1, 3, 2] })]); // [B,R,T,n]
    const slotNeg = L.slotsIdentity ? undefined : b.real(ft, L.slotValid.map((v) => (v ? 0 : NEG)), [L.R, T, 1], 'slot_neg');
    let A: string;
    if (this.spec.hard) {
      // every destination keeps itself; others go to the most similar destination, ties to the lowest
      let sim = b.op('Where', [isDest, b.real(ft, [4], [], 'self'), cs]);
      if (slotNeg) sim = b.op('Add', [sim, slotNeg]);
      const a = b.op('ArgMax', [sim], { axis: -2, keepdims: 1, select_last_index: 0 }); // [B,R,1,n]
      A = b.op('Cast', [b.op('Equal', [a, b.i64(range(T), [T, 1], 'slot_ids')])], { to: DT.FLOAT });
    } else {
      let logits = b.op('Mul', [cs, b.real(ft, [this.spec.tau], [], 'tau')]);
      if (slotNeg) logits = b.op('Add', [logits, slotNeg]);
      A = b.op('Softmax', [logits], { axis: -2 });
      if (ft !== DT.FLOAT) A = b.op('Cast', [A], { to: DT.FLOAT });
    }
    if (!L.unpadded) A = b.op('Mul', [A, b.f32(L.srcValid, [L.R, 1, n], 'src_valid_cols')]);
    return A;
  }

  /** The identity plan of ratio 0: A [1, R, nmax, nmax], one-hot on the real tokens. */
  identityA(): string {
    const L = this.L;
    const n = L.nmax;
    const a = new Array<number>(L.R * n * n).fill(0);
    for (let r = 0; r < L.R; r++) for (let i = 0; i < L.sizes[r]; i++) a[(r * n + i) * n + i] = 1;
    return this.b.f32(a, [1, L.R, n, n], 'identity_plan');
  }

  /** M = A / rowsum(A), U = A^T, in the model's dtype. */
  matrices(A: string, dtype: ElemType, b = this.b): MergeMatrices {
    const rs = b.op('ReduceSum', [A, b.i64([-1], [1], 'axes')], { keepdims: 1 });
    let M = b.op('Div', [A, b.op('Max', [rs, b.scalarF32(1e-30, 'tiny')])]);
    let U = b.op('Transpose', [A], { perm: [0, 1, 3, 2] });
    if (dtype !== DT.FLOAT) {
      M = b.op('Cast', [M], { to: dtype });
      U = b.op('Cast', [U], { to: dtype });
    }
    return { M, U };
  }

  /** [Bs, R, T] positions -> [Bs, K] token indices in [0, N). */
  destTokens(dest: string, b = this.b): string {
    const L = this.L;
    const flat = b.op('Add', [dest, b.i64(range(L.R).map((r) => r * L.nmax), [L.R, 1], 'region_offsets')]);
    const tok = b.op('Gather', [b.i64(L.perm, [L.R * L.nmax], 'region_perm'), flat], { axis: 0 });
    return this.compactSlots(b.op('Reshape', [tok, b.i64([0, L.R * L.T], [2], 'shape')]), b);
  }

  /** [B, R*T, ...] -> [B, K, ...] (drops unused slots). */
  private compactSlots(t: string, b = this.b): string {
    const L = this.L;
    return L.slotsIdentity ? t : b.op('Gather', [t, b.i64(L.validSlots, [L.K], 'valid_slots')], { axis: 1 });
  }

  // ----------------------------------------------------------------------------------------
  // merge / unmerge of image tokens

  /** xr [B, R, nmax, C] -> merged [B, K, C]. */
  mergeRegions(xr: string, M: string, b = this.b): string {
    const L = this.L;
    const yr = b.op('MatMul', [M, xr]);
    return this.compactSlots(b.op('Reshape', [yr, b.i64([0, L.R * L.T, -1], [3], 'shape')]), b);
  }

  /** y [B, K, C] -> unmerged [B, N, C]. */
  unmerge(y: string, U: string, b = this.b): string {
    const L = this.L;
    let t = y;
    if (!L.slotsIdentity) t = b.op('Gather', [t, b.i64(L.slotToK, [L.R * L.T], 'slot_to_k')], { axis: 1 });
    const yr = b.op('Reshape', [t, b.i64([0, L.R, L.T, -1], [4], 'shape')]);
    return this.regionScatter(b.op('MatMul', [U, yr]), b);
  }

  // ----------------------------------------------------------------------------------------
  // a whole plan, with the step control

  /** Fresh plan on xr: selection and weights. */
  freshPlan(xr: string, dtype: ElemType, b = this.b): PlanTensors {
    const u = this.normalize(xr, dtype, b);
    const us = this.spec.shareBatch ? b.op('Slice', [u, b.i64([0]), b.i64([1]), b.i64([0])]) : u;
    const dest = this.select(us, b);
    return { dest, A: this.weights(u, dest, b) };
  }

  /**
   * The plan of a group's first block with the step control: `If(mode == 2)` selects and weighs,
   * `If(mode == 1)` keeps destIn and weighs, otherwise (destIn, AIn) pass through. Outputs get
   * the given names (graph outputs).
   */
  controlledPlan(
    xr: string,
    dtype: ElemType,
    io: { isSelect: string; isWeights: string; destIn: string; AIn: string; destOut: string; AOut: string },
  ): PlanTensors {
    const b = this.b;
    const outs = (bb: GraphBuilder, p: PlanTensors) => {
      const d = bb.op('Identity', [p.dest]);
      const a = bb.op('Identity', [p.A]);
      return [valueInfo(d, DT.INT64), valueInfo(a, DT.FLOAT)];
    };
    const sel = b.sub(`${b.scope}/select`);
    const selGraph = sel.graph(sel.fresh('then'), outs(sel, this.freshPlan(xr, dtype, sel)));
    const wt = b.sub(`${b.scope}/weights`);
    const wGraph = wt.graph(wt.fresh('then'), outs(wt, { dest: io.destIn, A: this.weights(this.normalize(xr, dtype, wt), io.destIn, wt) }));
    const reuse = b.sub(`${b.scope}/reuse`);
    const rGraph = reuse.graph(reuse.fresh('else'), outs(reuse, { dest: io.destIn, A: io.AIn }));
    const inner = b.sub(`${b.scope}/keep`);
    const [d2, a2] = inner.node('If', [io.isWeights], { then_branch: wGraph, else_branch: rGraph }, 2);
    const innerGraph = inner.graph(inner.fresh('else'), [valueInfo(d2, DT.INT64), valueInfo(a2, DT.FLOAT)]);
    b.node('If', [io.isSelect], { then_branch: selGraph, else_branch: innerGraph }, [io.destOut, io.AOut]);
    return { dest: io.destOut, A: io.AOut };
  }
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Plan control codes fed as `toma_recompute`. */
export const RECOMPUTE = { reuse: 0, weights: 1, select: 2 } as const;
