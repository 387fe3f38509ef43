// The ops of SPEC section 8. Each returns a Promise and runs off the JavaScript thread; argument
// errors (TypeError / RangeError naming the argument) arrive as rejections.
import { opBackend } from './backend';
import { loadAddon, type NativePlan } from './native';
import type { AttentionOptions, BackendOption, MergeAttentionOptions, PlanOptions, Tensor } from './types';

/** A merge plan held natively: destinations and weights, reusable for many merges. */
export type Plan = NativePlan;
export const Plan: { prototype: Plan } = loadAddon().Plan;

// Options reach the addon with the resolved backend; invalid option objects are left for the
// addon to reject with its own messages.
function withBackend<T>(op: string, o: T): T {
  const requested = o !== null && typeof o === 'object' ? (o as BackendOption).backend : undefined;
  const b = opBackend(op, requested);
  return o !== null && typeof o === 'object' && !Array.isArray(o) ? { ...o, backend: b } : o;
}

export async function selectDestinations(x: Tensor, o: PlanOptions): Promise<Int32Array> {
  return loadAddon().selectDestinations(x, withBackend('selectDestinations', o));
}

export async function computePlan(x: Tensor, o: PlanOptions): Promise<Plan> {
  return loadAddon().computePlan(x, withBackend('computePlan', o));
}

export async function merge(x: Tensor, plan: Plan, o: BackendOption = {}): Promise<Tensor> {
  return loadAddon().merge(x, plan, withBackend('merge', o));
}

export async function unmerge(y: Tensor, plan: Plan, o: BackendOption = {}): Promise<Tensor> {
  return loadAddon().unmerge(y, plan, withBackend('unmerge', o));
}

export async function attention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Promise<Tensor> {
  return loadAddon().attention(q, k, v, withBackend('attention', o));
}

export async function mergeAttentionUnmerge(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  plan: Plan,
  o: MergeAttentionOptions,
): Promise<Tensor> {
  return loadAddon().mergeAttentionUnmerge(q, k, v, plan, withBackend('mergeAttentionUnmerge', o));
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
