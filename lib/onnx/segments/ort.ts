// onnxruntime-node is an optional peer dependency: it is loaded here, on first use, never when
// toma is imported.
import { create } from '@bufbuild/protobuf';
import {
  TensorProto_DataType,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type ValueInfoProto,
} from '../gen/onnx_pb';
import type { Shape } from '../shapes';

export type Ort = typeof import('onnxruntime-node');

let cached: Ort | undefined;

export function loadOrt(): Ort {
  if (cached) return cached;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require('onnxruntime-node') as Ort;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'MODULE_NOT_FOUND' && /onnxruntime-node/.test(err.message))
      throw new Error(
        "toma.onnx sessions need onnxruntime-node, an optional peer dependency of toma that is not installed: run 'npm install onnxruntime-node'",
      );
    throw e;
  }
  return cached;
}

const ELEM: Record<string, TensorProto_DataType> = {
  float32: TensorProto_DataType.FLOAT,
  float16: TensorProto_DataType.FLOAT16,
  float64: TensorProto_DataType.DOUBLE,
  int64: TensorProto_DataType.INT64,
  int32: TensorProto_DataType.INT32,
  int16: TensorProto_DataType.INT16,
  int8: TensorProto_DataType.INT8,
  uint64: TensorProto_DataType.UINT64,
  uint32: TensorProto_DataType.UINT32,
  uint16: TensorProto_DataType.UINT16,
  uint8: TensorProto_DataType.UINT8,
  bool: TensorProto_DataType.BOOL,
  string: TensorProto_DataType.STRING,
};

export function elemTypeOf(ortType: string): TensorProto_DataType {
  const t = ELEM[ortType];
  if (t === undefined) throw new TypeError(`segments: onnxruntime type '${ortType}' cannot cross a cut`);
  return t;
}

/** A typed ValueInfo: static dims from `shape` where known, the rest left open. */
export function typedValueInfo(name: string, elemType: number, shape: Shape | Array<number | string> | undefined): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType,
          ...(shape
            ? {
                shape: create(TensorShapeProtoSchema, {
                  dim: shape.map((d) =>
                    create(TensorShapeProto_DimensionSchema, typeof d === 'number' && d >= 0 ? { value: { case: 'dimValue', value: BigInt(d) } } : {}),
                  ),
                }),
              }
            : {}),
        }),
      },
    }),
  });
}

/** The element type a ValueInfo declares, if any. */
export function elemTypeOfInfo(v: ValueInfoProto | undefined): number | undefined {
  const t = v?.type?.value;
  return t?.case === 'tensorType' ? t.value.elemType : undefined;
}
