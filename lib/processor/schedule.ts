// The reuse schedule of SPEC section 7, as a pure function of the step and what the group last
// did, so it can be tested exactly and shared by every plan method.

export type PlanAction = 'select' | 'weights' | 'reuse';

export interface GroupHistory {
  /** Step of the group's last destination selection, or undefined before the first. */
  selectedAt?: number;
  /** Step of the group's last weight computation (a selection computes weights too). */
  weighedAt?: number;
}

/**
 * What the next merged block of a group does at `step`. On a step with
 * step % destinationInterval == 0, the first block selects destinations and computes weights; on
 * other steps with step % weightInterval == 0 it keeps the destinations and recomputes the
 * weights; every other step, and every later block of the group in the same step, reuses the
 * group's last plan. A group with no plan yet selects, whatever the step.
 */
export function planAction(step: number, h: GroupHistory, destinationInterval: number, weightInterval: number): PlanAction {
  if (h.selectedAt === undefined) return 'select';
  if (step % destinationInterval === 0 && h.selectedAt !== step) return 'select';
  if (step % weightInterval === 0 && h.weighedAt !== step) return 'weights';
  return 'reuse';
}
