// toma: Token Merge with Attention for diffusion transformers. The public API (SPEC section 8).
export type {
  AttentionOptions,
  BackendInfo,
  BackendName,
  BackendOption,
  OutOption,
  RowsOptions,
  Dtype,
  MergeAttentionOptions,
  PlanOptions,
  Region,
  RegionMatrices,
  Tensor,
} from './types';
export { backend, BackendUnavailableError } from './backend';
export {
  Plan,
  selectDestinations,
  computePlan,
  merge,
  unmerge,
  attention,
  mergeAttentionUnmerge,
  assignmentPlan,
  tomesdPlan,
} from './ops';
export type { AssignmentPlanOptions, TomesdPlanOptions } from './ops';
export { createProcessor } from './processor/processor';
export type { Processor, ProcessorOptions, ProcessorStats, ProcessorCall } from './processor/processor';
export { addonPath } from './native';
export { DeviceTensor, isDeviceTensor, toDevice } from './device';
export { tensor, fromFloat32, toFloat32 } from './tensor';
export * as onnx from './onnx';
