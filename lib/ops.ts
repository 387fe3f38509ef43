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
