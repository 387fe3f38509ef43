// The contract shared by both patch modes (SPEC section 8): a TomaSession looks like an
// onnxruntime InferenceSession (inputNames, outputNames, run) plus toma's own controls.
import type { ProcessorOptions, ProcessorStats } from '../processor/processor';

/** onnxruntime-node's Tensor and run options, kept structural so onnxruntime stays optional. */
export type OrtTensor = import('onnxruntime-node').Tensor;
export type OrtSessionOptions = import('onnxruntime-node').InferenceSession.SessionOptions;
export type OrtRunOptions = import('onnxruntime-node').InferenceSession.RunOptions;

export type PatchMode = 'segments' | 'standard-ops';

export type SessionOptions = Omit<ProcessorOptions, 'ratio'> & {
  /** Fraction of image tokens removed in merged blocks, [0, 1). 0 runs the model unpatched. */
  ratio: ProcessorOptions['ratio'];
  /** Default 'auto': the mode the payoff estimate says is faster for the model (lib/onnx/payoff.ts). */
  mode?: PatchMode | 'auto';
  /** [H, W] where the graph cannot tell (a DiT fed [B, N, C] tokens). */
  grid?: [number, number];
};

export interface SessionStats {
  mode: PatchMode;
  /** Blocks patched, by name; the others run as exported. */
  patchedBlocks: string[];
  /** Runs since beginImage(): each run() is one denoising step. */
  step: number;
  runs: number;
  /** Time inside onnxruntime, inside toma's processor (segments), and in all of run(). */
  ortMs: number;
  tomaMs: number;
  totalMs: number;
  /** segments: pieces the graph was cut into. */
  segments?: number;
  processor?: ProcessorStats;
}

export interface TomaSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** One denoising step: the same feeds and outputs as the original model's session. */
  run(feeds: Record<string, OrtTensor>, options?: OrtRunOptions): Promise<Record<string, OrtTensor>>;
  /** Starts a new image: the step counter and the reuse schedule restart at step 0. */
  beginImage(): void;
  stats(): SessionStats;
  release(): Promise<void>;
}
