// Shared helpers for the ONNX tests: fixture paths, onnxruntime-node runs on seeded inputs, and
// small hand-built graphs.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import * as ort from 'onnxruntime-node';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type NodeProto,
  type TensorProto,
} from '../../lib/onnx/gen/onnx_pb';

export const ROOT = path.join(__dirname, '..', '..');
export const FIXTURES = path.join(ROOT, 'models', 'fixtures');
export const fixture = (name: string) => path.join(FIXTURES, name);
export const PPOCR = path.join(ROOT, 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_PP-OCRv4_rec_infer.onnx');

/** Every committed model fixture (the _ext one needs its .data beside it). */
export const ALL_FIXTURES = [
  'sd_transformer_32x32.onnx',
  'sd_transformer_64x64.onnx',
  'sd_transformer_64x64_static.onnx',
  'flux_joint.onnx',
  'sd_transformer_32x32_mha.onnx',
  'sd_transformer_64x64_mha.onnx',
  'flux_joint_mha.onnx',
  'sd_transformer_32x32_ext.onnx',
];

export function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `toma-onnx-${tag}-`));
}

/** Seeded inputs for every float input of a session; symbolic dims become `dynamic`. */
export function seededFeeds(session: ort.InferenceSession, seed = 7, dynamic = 1, overrides: Record<string, number[]> = {}) {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 4294967296) * 2 - 1;
  };
  const feeds: Record<string, ort.Tensor> = {};
  const meta = session.inputMetadata as unknown as Array<{ name: string; shape: Array<number | string> }>;
  for (const m of meta) {
    const shape = overrides[m.name] ?? m.shape.map((d) => (typeof d === 'number' && d > 0 ? d : dynamic));
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rnd();
    feeds[m.name] = new ort.Tensor('float32', data, shape);
  }
  return feeds;
}

export async function runModel(file: string | Uint8Array, seed = 7, overrides: Record<string, number[]> = {}): Promise<Record<string, Float32Array>> {
  const session = typeof file === 'string' ? await ort.InferenceSession.create(file) : await ort.InferenceSession.create(file);
  try {
    const out = await session.run(seededFeeds(session, seed, 1, overrides));
    const r: Record<string, Float32Array> = {};
    for (const k of session.outputNames) r[k] = Float32Array.from(out[k].data as Float32Array);
    return r;
  } finally {
    await session.release();
  }
}

export function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += a[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

// ---------------------------------------------------------------------------------------------
// hand-built graphs

export function vi(name: string, dims: Array<number | string>) {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: TensorProto_DataType.FLOAT,
          shape: create(TensorShapeProtoSchema, {
            dim: dims.map((d) =>
              create(TensorShapeProto_DimensionSchema, {
                value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : { case: 'dimParam', value: d },
              }),
            ),
          }),
        }),
      },
    }),
  });
}

export function floatTensor(name: string, dims: number[], seed = 1): TensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 4294967296 - 0.5) / Math.sqrt(dims[0] ?? 1);
  }
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: TensorProto_DataType.FLOAT, rawData: new Uint8Array(data.buffer) });
}

export function int64Tensor(name: string, values: number[]): TensorProto {
  return create(TensorProtoSchema, { name, dims: [BigInt(values.length)], dataType: TensorProto_DataType.INT64, int64Data: values.map(BigInt) });
}

export function ints(name: string, v: number[]): AttributeProto {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: v.map(BigInt) });
}

export function node(opType: string, input: string[], output: string[], attribute: AttributeProto[] = [], extra: Partial<NodeProto> = {}): NodeProto {
  return create(NodeProtoSchema, { opType, input, output, attribute, name: extra.name ?? `${opType}_${output[0]}`, domain: extra.domain });
}

export function model(nodes: NodeProto[], inits: TensorProto[], inputs: ReturnType<typeof vi>[], outputs: ReturnType<typeof vi>[], msDomain = false) {
  return create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: 'toma-test',
    opsetImport: [
      create(OperatorSetIdProtoSchema, { domain: '', version: 17n }),
      ...(msDomain ? [create(OperatorSetIdProtoSchema, { domain: 'com.microsoft', version: 1n })] : []),
    ],
    graph: create(GraphProtoSchema, { name: 'g', node: nodes, initializer: inits, input: inputs, output: outputs }),
  });
}

export function modelBytes(m: ReturnType<typeof model>): Uint8Array {
  return toBinary(ModelProtoSchema, m);
}
