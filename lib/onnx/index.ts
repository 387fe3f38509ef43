// toma.onnx: the ONNX side of toma (SPEC section 8). inspect() is here; createSession and
// patchModel build on the reader/writer (model.ts) and the matcher (matcher.ts).
export { inspect } from './inspect';
export type { InspectBlock, InspectReport } from './inspect';
export { matchAttention } from './matcher';
export type { AttentionBlock, AttentionForm, AttentionKind, Hazard, MatchReport, Projection, Rope, Stream } from './matcher';
export {
  readModel,
  decodeModel,
  writeModel,
  encodeModel,
  payloadOf,
  hasElidedPayload,
  isExternal,
  readPayload,
  allTensors,
  externalLocations,
  OnnxFormatError,
  DEFAULT_INLINE_LIMIT,
} from './model';
export type { OnnxModel, ModelSource, ReadOptions, WriteOptions, WriteReport, PayloadRef } from './model';
export { GraphIndex, nodeName, tensorValues } from './graph';
export { ShapeInfo } from './shapes';
export type { Dim, Shape } from './shapes';
export { createSession } from './session';
export type { CreateSessionOptions } from './session';
export type { OrtTensor, OrtSessionOptions, OrtRunOptions, PatchMode, SessionOptions, SessionStats, TomaSession } from './session-types';
export { createSegmentSession, defaultDenseBlocks } from './segments';
export type { SegmentOptions, SegmentBlock, SegmentSessionStats } from './segments';
export { patchModel, createStandardOpsSession } from './standard-ops';
export type { PatchModelOptions, PatchOptions, PatchReport, PatchedBlock, PatchGroup, PlanTensorInfo, StandardOpsSession, StandardOpsStats } from './standard-ops';
