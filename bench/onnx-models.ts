// The small ONNX models the CPU benchmarks run in onnxruntime-node as peers, built in memory and
// encoded with onnx-proto (ONNX's own onnx.proto compiled by protobufjs): no files, no weights.
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';

type Dim = number | string;

const FLOAT = onnx.TensorProto.DataType.FLOAT;

function tensorInfo(name: string, dims: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function encodeModel(name: string, graph: onnx.IGraphProto, msOpset: boolean): Uint8Array {
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: 'toma-bench',
    opsetImport: [{ domain: '', version: 17 }, ...(msOpset ? [{ domain: 'com.microsoft', version: 1 }] : [])],
    graph: { ...graph, name },
  };
  const err = onnx.ModelProto.verify(model);
  if (err) throw new Error(`onnx-models: invalid ${name}: ${err}`);
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

/**
 * com.microsoft MultiHeadAttention: query [B, S, C], key and value [B, L, C] -> output [B, S, C],
 * scale 1 / sqrt(C / heads) (the operator's default). B, S and L are symbolic, so one session
 * also serves the merged token counts.
 */
export function multiHeadAttentionModel(channels: number, heads: number): Uint8Array {
  const node: onnx.INodeProto = {
    name: 'mha',
    opType: 'MultiHeadAttention',
    domain: 'com.microsoft',
    input: ['query', 'key', 'value'],
    output: ['output'],
    attribute: [{ name: 'num_heads', type: onnx.AttributeProto.AttributeType.INT, i: heads }],
  };
  return encodeModel(
    `mha_c${channels}_h${heads}`,
    {
      node: [node],
      input: [
        tensorInfo('query', ['B', 'S', channels]),
        tensorInfo('key', ['B', 'L', channels]),
        tensorInfo('value', ['B', 'L', channels]),
      ],
      output: [tensorInfo('output', ['B', 'S', channels])],
    },
    true,
  );
}

/** Y[m, n] = A[m, k] @ B[k, n]; both operands are inputs (nothing prepacked at load). */
export function matMulModel(m: number, k: number, n: number): Uint8Array {
  return encodeModel(
    `matmul_${m}x${k}x${n}`,
    {
      node: [{ name: 'matmul', opType: 'MatMul', input: ['A', 'B'], output: ['Y'] }],
      input: [tensorInfo('A', [m, k]), tensorInfo('B', [k, n])],
      output: [tensorInfo('Y', [m, n])],
    },
    false,
  );
}

export interface PeerOptions {
  /** onnxruntime intra-op threads; default: every core. */
  threads: number;
}

/** A CPU session made from an in-memory model. */
export async function createSession(model: Uint8Array, o: PeerOptions): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(Buffer.from(model.buffer, model.byteOffset, model.byteLength), {
    executionProviders: ['cpu'],
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // onnxruntime's pool threads spin inside a run (its fastest setting) but would go on spinning
    // after it and take CPU from whatever runs next in the process (toma's timings here):
    // force_spinning_stop ends the spin when a run returns.
    extra: { session: { force_spinning_stop: '1' } },
  });
}

/** Runs a [B, S, C] / [B, L, C] attention through a MultiHeadAttention session. */
export async function runMultiHeadAttention(
  session: ort.InferenceSession,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  B: number,
  S: number,
  L: number,
  C: number,
): Promise<Float32Array> {
  const out = await session.run({
    query: new ort.Tensor('float32', q, [B, S, C]),
    key: new ort.Tensor('float32', k, [B, L, C]),
    value: new ort.Tensor('float32', v, [B, L, C]),
  });
  return out.output.data as Float32Array;
}
