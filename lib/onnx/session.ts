// toma.onnx.createSession(path, options, ortOptions?) (SPEC section 8): a TomaSession that runs an
// ONNX model in onnxruntime-node with toma merging its self- and joint-attention blocks.
//   mode 'auto' (default): whichever of the two the payoff estimate says is faster for the model
//     (auto.ts);
//   mode 'segments': the graph is cut at each patched attention and toma's native
//     processor runs merge-attention-unmerge between the pieces (segments.ts);
//   mode 'standard-ops': the model is rewritten with ToMA in standard ONNX ops and runs as one
//     graph (standard-ops.ts).
import type { OrtSessionOptions, SessionOptions, TomaSession } from './session-types';
import { createSegmentSession, type SegmentOptions } from './segments';
import { AutoSession } from './auto';

export type CreateSessionOptions = SessionOptions & Partial<Omit<SegmentOptions, keyof SessionOptions>>;

type StandardOpsFactory = (path: string, options: SessionOptions, ortOptions?: OrtSessionOptions) => Promise<TomaSession>;

/** The standard-ops mode, loaded on first use (its module is optional at build time). */
function standardOps(): StandardOpsFactory {
  let mod: { createStandardOpsSession?: StandardOpsFactory };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require('./standard-ops');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'MODULE_NOT_FOUND' && /standard-ops/.test(err.message))
      throw new Error("options.mode 'standard-ops' is not available in this build of toma (lib/onnx/standard-ops is missing); use mode 'segments'");
    throw e;
  }
  if (typeof mod.createStandardOpsSession !== 'function')
    throw new Error("options.mode 'standard-ops': lib/onnx/standard-ops does not export createStandardOpsSession");
  return mod.createStandardOpsSession;
}

export async function createSession(path: string, options: CreateSessionOptions, ortOptions?: OrtSessionOptions): Promise<TomaSession> {
  if (typeof path !== 'string' || path.length === 0)
    throw new TypeError(`path: expected the path of an .onnx file, got ${typeof path === 'string' ? 'an empty string' : typeof path}`);
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new TypeError(`options must be an object { ratio, mode?, grid?, ... }, got ${String(options)}`);
  const mode = options.mode ?? 'auto';
  if (mode === 'segments') return createSegmentSession(path, options, ortOptions);
  if (mode === 'standard-ops') return standardOps()(path, options, ortOptions);
  if (mode === 'auto') return AutoSession.create(path, options, ortOptions, { segments: createSegmentSession as never, 'standard-ops': (p, o, r) => standardOps()(p, o, r) });
  throw new RangeError(`options.mode must be 'auto', 'segments' or 'standard-ops', got ${String(mode)}`);
}
