// Standard-ops mode (DESIGN "The external runtime", mechanism 1): ToMA written in standard ONNX
// operators inside the model's own graph, for every execution provider (onnxruntime-web too).
//   patchModel(inPath, outPath, options)          a standalone patched model + a report
//   createStandardOpsSession(path, options, ort)  a TomaSession that threads plans across steps
// The pieces: standard-ops/layout.ts (region index tensors), toma-graph.ts (the ToMA ops),
// patch.ts (graph surgery around the matcher's blocks), session.ts (the reuse schedule).
export { patchModel } from './standard-ops/patch-model';
export type { PatchModelOptions } from './standard-ops/patch-model';
export { createStandardOpsSession } from './standard-ops/session';
export type { StandardOpsSession, StandardOpsStats } from './standard-ops/session';
export { patchGraph, CONTROL_INPUT } from './standard-ops/patch';
export type { PatchOptions, PatchReport, PatchedBlock, PatchGroup, PlanTensorInfo, PlanIOMode } from './standard-ops/patch';
export { buildTomaModel } from './standard-ops/test-model';
export type { TomaModel, TomaModelOptions } from './standard-ops/test-model';
