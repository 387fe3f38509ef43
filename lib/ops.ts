// The ops of SPEC section 8. Each returns a Promise and runs off the JavaScript thread; argument
// errors (TypeError / RangeError naming the argument) arrive as rejections.
import { opBackend } from './backend';
import { isDeviceTensor, type DeviceTensor } from './device';
import { loadAddon, type NativePlan } from './native';
import type { AttentionOptions, MergeAttentionOptions, PlanOptions, RowsOptions, Tensor } from './types';

/** A merge plan held natively: destinations and weights, reusable for many merges. */
export type Plan = NativePlan;
export const Plan: { prototype: Plan } = loadAddon().Plan;

// Options reach the addon with the resolved backend; invalid option objects are left for the
// addon to reject with its own messages. A DeviceTensor argument asks for CUDA unless a backend
// was given (where CUDA is unavailable no real DeviceTensor exists, and the addon rejects the fake).
function withBackend<T>(op: string, o: T, tensors: unknown[] = []): T {
  let requested = o !== null && typeof o === 'object' ? (o as RowsOptions).backend : undefined;
  if (requested === undefined && tensors.some(isDeviceTensor) && loadAddon().backendInfo().cudaAvailable)
    requested = 'cuda';
  const b = opBackend(op, requested);
  return o !== null && typeof o === 'object' && !Array.isArray(o) ? { ...o, backend: b } : o;
}

type AnyTensor = Tensor | DeviceTensor;

// options.out is written off the JavaScript thread: a buffer that can shrink or move under the
// call (a resizable ArrayBuffer) is refused up front. The addon checks everything else.
function checkOut(o: unknown): void {
  const out = o !== null && typeof o === 'object' ? (o as { out?: unknown }).out : undefined;
  const data = out !== null && typeof out === 'object' ? (out as { data?: unknown }).data : undefined;
  if (ArrayBuffer.isView(data) && (data.buffer as ArrayBuffer & { resizable?: boolean }).resizable === true)
    throw new TypeError('options.out.data must not be backed by a resizable ArrayBuffer: the result is written while the call is pending');
}

export async function selectDestinations(x: AnyTensor, o: PlanOptions): Promise<Int32Array> {
  return loadAddon().selectDestinations(x, withBackend('selectDestinations', o, [x]));
}

/** On CUDA the plan stays on the device (plan.device); either backend converts it once if needed. */
export async function computePlan(x: AnyTensor, o: PlanOptions): Promise<Plan> {
  return loadAddon().computePlan(x, withBackend('computePlan', o, [x]));
}

export function merge(x: DeviceTensor, plan: Plan, o?: RowsOptions): Promise<DeviceTensor>;
export function merge(x: Tensor, plan: Plan, o?: RowsOptions): Promise<Tensor>;
export function merge(x: AnyTensor, plan: Plan, o?: RowsOptions): Promise<AnyTensor>;
export async function merge(x: AnyTensor, plan: Plan, o: RowsOptions = {}): Promise<AnyTensor> {
  checkOut(o);
  return loadAddon().merge(x, plan, withBackend('merge', o, [x]));
}

export function unmerge(y: DeviceTensor, plan: Plan, o?: RowsOptions): Promise<DeviceTensor>;
export function unmerge(y: Tensor, plan: Plan, o?: RowsOptions): Promise<Tensor>;
export function unmerge(y: AnyTensor, plan: Plan, o?: RowsOptions): Promise<AnyTensor>;
export async function unmerge(y: AnyTensor, plan: Plan, o: RowsOptions = {}): Promise<AnyTensor> {
  checkOut(o);
  return loadAddon().unmerge(y, plan, withBackend('unmerge', o, [y]));
}

export function attention(q: DeviceTensor, k: AnyTensor, v: AnyTensor, o: AttentionOptions): Promise<DeviceTensor>;
export function attention(q: Tensor, k: AnyTensor, v: AnyTensor, o: AttentionOptions): Promise<Tensor>;
export function attention(q: AnyTensor, k: AnyTensor, v: AnyTensor, o: AttentionOptions): Promise<AnyTensor>;
export async function attention(q: AnyTensor, k: AnyTensor, v: AnyTensor, o: AttentionOptions): Promise<AnyTensor> {
  checkOut(o);
  return loadAddon().attention(q, k, v, withBackend('attention', o, [q, k, v]));
}

export function mergeAttentionUnmerge(
  q: DeviceTensor,
  k: AnyTensor,
  v: AnyTensor,
  plan: Plan,
  o: MergeAttentionOptions,
): Promise<DeviceTensor>;
export function mergeAttentionUnmerge(q: Tensor, k: AnyTensor, v: AnyTensor, plan: Plan, o: MergeAttentionOptions): Promise<Tensor>;
export function mergeAttentionUnmerge(
  q: AnyTensor,
  k: AnyTensor,
  v: AnyTensor,
  plan: Plan,
  o: MergeAttentionOptions,
): Promise<AnyTensor>;
export async function mergeAttentionUnmerge(
  q: AnyTensor,
  k: AnyTensor,
  v: AnyTensor,
  plan: Plan,
  o: MergeAttentionOptions,
): Promise<AnyTensor> {
  checkOut(o);
  return loadAddon().mergeAttentionUnmerge(q, k, v, plan, withBackend('mergeAttentionUnmerge', o, [q, k, v]));
}

export interface AssignmentPlanOptions {
  grid: [number, number];
  /** Merged tokens per batch element; every index in [0, K) must receive a token. */
  K: number;
  prefix?: number;
  /** [B, K] flat: the token whose position each merged index takes (default: its first token). */
  representatives?: Int32Array;
}

/**
 * A hard plan from an explicit assignment ([B, N] flat, token -> merged index): merge takes the
 * mean of the tokens sent to an index, unmerge copies it back. Used by the ToDo baseline.
 */
export async function assignmentPlan(assignment: Int32Array, o: AssignmentPlanOptions): Promise<Plan> {
  return loadAddon().assignmentPlan(assignment, o);
}

export interface TomesdPlanOptions {
  grid: [number, number];
  /** floor(ratio * N) tokens merged; more than the grid's sources is a RangeError (never capped). */
  ratio: number;
  prefix?: number;
  /** Cell size, default 2 x 2: one destination per cell. */
  sx?: number;
  sy?: number;
  /** Random destination inside each cell (from `seed`), else the top-left token. Default true. */
  random?: boolean;
  seed?: number;
}

/** ToMeSD's bipartite plan on toma's merge/unmerge ops (the baseline of the processor). */
export async function tomesdPlan(x: Tensor, o: TomesdPlanOptions): Promise<Plan> {
  return loadAddon().tomesdPlan(x, o);
}
