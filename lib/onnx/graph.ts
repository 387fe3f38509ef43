// An index over one GraphProto: producers, consumers, constants (initializers and Constant nodes),
// attribute getters and small-tensor decoding. Read-only; the messages stay the model's own.
import {
  AttributeProto_AttributeType,
  TensorProto_DataType,
  type AttributeProto,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './gen/onnx_pb';
import { hasElidedPayload, isExternal, payloadOf, readPayload, type OnnxModel } from './model';

export interface Producer {
  node: NodeProto;
  /** Index of the node in graph.node. */
  index: number;
  /** Which output of the node. */
  output: number;
}

/** A stable, human-readable name for a node: its name, or op_type and first output. */
export function nodeName(n: NodeProto): string {
  return n.name || `${n.opType}(${n.output[0] ?? ''})`;
}

export class GraphIndex {
  readonly producers = new Map<string, Producer>();
  readonly consumers = new Map<string, NodeProto[]>();
  readonly initializers = new Map<string, TensorProto>();
  readonly inputs = new Map<string, ValueInfoProto>();
  readonly valueInfo = new Map<string, ValueInfoProto>();
  readonly outputs = new Set<string>();

  constructor(
    readonly graph: GraphProto,
    readonly model?: OnnxModel,
  ) {
    graph.node.forEach((node, index) => {
      node.output.forEach((o, output) => {
        if (o) this.producers.set(o, { node, index, output });
      });
      for (const i of node.input) {
        if (!i) continue;
        const list = this.consumers.get(i);
        if (list) list.push(node);
        else this.consumers.set(i, [node]);
      }
    });
    for (const t of graph.initializer) this.initializers.set(t.name, t);
    for (const v of graph.input) this.inputs.set(v.name, v);
    for (const v of graph.valueInfo) this.valueInfo.set(v.name, v);
    for (const v of graph.output) this.outputs.add(v.name);
  }

  producer(name: string): NodeProto | undefined {
    return this.producers.get(name)?.node;
  }

  consumersOf(name: string): NodeProto[] {
    return this.consumers.get(name) ?? [];
  }

  /**
   * The tensor behind a constant value: an initializer (not overridden by a graph input), a
   * Constant node, or an Identity of one (torch's exporter reads shared weights through Identity).
   */
  constTensor(name: string, depth = 0): TensorProto | undefined {
    const init = this.initializers.get(name);
    if (init) return this.inputs.has(name) ? undefined : init;
    const p = this.producer(name);
    if (p && p.opType === 'Identity' && (p.domain === '' || p.domain === 'ai.onnx') && depth < 8) return this.constTensor(p.input[0], depth + 1);
    if (p && p.opType === 'Constant' && (p.domain === '' || p.domain === 'ai.onnx')) {
      const a = p.attribute.find((x) => x.name === 'value');
      if (a?.t) return a.t;
      const f = p.attribute.find((x) => x.name === 'value_float');
      if (f) return { dims: [], dataType: TensorProto_DataType.FLOAT, floatData: [f.f] } as unknown as TensorProto;
      const fs = p.attribute.find((x) => x.name === 'value_floats');
      if (fs) return { dims: [BigInt(fs.floats.length)], dataType: TensorProto_DataType.FLOAT, floatData: fs.floats } as unknown as TensorProto;
      const i = p.attribute.find((x) => x.name === 'value_int');
      if (i) return { dims: [], dataType: TensorProto_DataType.INT64, int64Data: [i.i] } as unknown as TensorProto;
      const is = p.attribute.find((x) => x.name === 'value_ints');
      if (is) return { dims: [BigInt(is.ints.length)], dataType: TensorProto_DataType.INT64, int64Data: is.ints } as unknown as TensorProto;
    }
    return undefined;
  }

  isConst(name: string): boolean {
    return this.constTensor(name) !== undefined;
  }

  /** Dims of a constant tensor. */
  constDims(name: string): number[] | undefined {
    const t = this.constTensor(name);
    return t ? t.dims.map(Number) : undefined;
  }

  /** Values of a small constant (at most maxElements), as numbers; undefined if not constant or too big. */
  constValues(name: string, maxElements = 4096): number[] | undefined {
    const t = this.constTensor(name);
    return t ? tensorValues(t, this.model, maxElements) : undefined;
  }

  /** Scalar value of a constant holding one element. */
  constScalar(name: string): number | undefined {
    const v = this.constValues(name, 1);
    return v && v.length === 1 ? v[0] : undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// attributes

export function attr(n: NodeProto, name: string): AttributeProto | undefined {
  return n.attribute.find((a) => a.name === name);
}

export function attrInt(n: NodeProto, name: string, dflt?: number): number | undefined {
  const a = attr(n, name);
  return a && (a.type === AttributeProto_AttributeType.INT || a.i !== undefined) ? Number(a.i ?? 0n) : dflt;
}

export function attrInts(n: NodeProto, name: string): number[] | undefined {
  const a = attr(n, name);
  return a ? a.ints.map(Number) : undefined;
}

export function attrFloat(n: NodeProto, name: string, dflt?: number): number | undefined {
  const a = attr(n, name);
  return a ? (a.f ?? dflt) : dflt;
}

export function attrString(n: NodeProto, name: string): string | undefined {
  const a = attr(n, name);
  return a?.s ? new TextDecoder().decode(a.s) : undefined;
}

// ---------------------------------------------------------------------------------------------
// small tensor decoding

const ELEMENT_BYTES: Partial<Record<number, number>> = {
  [TensorProto_DataType.FLOAT]: 4,
  [TensorProto_DataType.DOUBLE]: 8,
  [TensorProto_DataType.INT64]: 8,
  [TensorProto_DataType.UINT64]: 8,
  [TensorProto_DataType.INT32]: 4,
  [TensorProto_DataType.UINT32]: 4,
  [TensorProto_DataType.INT16]: 2,
  [TensorProto_DataType.UINT16]: 2,
  [TensorProto_DataType.INT8]: 1,
  [TensorProto_DataType.UINT8]: 1,
  [TensorProto_DataType.BOOL]: 1,
  [TensorProto_DataType.FLOAT16]: 2,
  [TensorProto_DataType.BFLOAT16]: 2,
};

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/**
 * Values of a tensor as numbers (int64 converted with Number), for small tensors only: shapes,
 * scales, perms. Elided payloads are read from the source only when a model is given and the
 * tensor is small; external data is never read. undefined when unavailable.
 */
export function tensorValues(t: TensorProto, model: OnnxModel | undefined, maxElements = 4096): number[] | undefined {
  const count = t.dims.reduce((a, d) => a * Number(d), 1);
  if (count > maxElements) return undefined;
  if (isExternal(t)) return undefined;
  const dt = t.dataType;
  let raw: Uint8Array | undefined = t.rawData && t.rawData.length ? t.rawData : undefined;
  if (!raw && hasElidedPayload(t)) {
    const ref = payloadOf(t)!;
    if (!model || ref.field !== 9) return undefined;
    raw = readPayload(model, ref, maxElements * 8);
  }
  if (raw) {
    const size = ELEMENT_BYTES[dt];
    if (!size || raw.length !== count * size) return undefined;
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      const o = i * size;
      switch (dt) {
        case TensorProto_DataType.FLOAT: out.push(dv.getFloat32(o, true)); break;
        case TensorProto_DataType.DOUBLE: out.push(dv.getFloat64(o, true)); break;
        case TensorProto_DataType.INT64: out.push(Number(dv.getBigInt64(o, true))); break;
        case TensorProto_DataType.UINT64: out.push(Number(dv.getBigUint64(o, true))); break;
        case TensorProto_DataType.INT32: out.push(dv.getInt32(o, true)); break;
        case TensorProto_DataType.UINT32: out.push(dv.getUint32(o, true)); break;
        case TensorProto_DataType.INT16: out.push(dv.getInt16(o, true)); break;
        case TensorProto_DataType.UINT16: out.push(dv.getUint16(o, true)); break;
        case TensorProto_DataType.INT8: out.push(dv.getInt8(o)); break;
        case TensorProto_DataType.UINT8: case TensorProto_DataType.BOOL: out.push(dv.getUint8(o)); break;
        case TensorProto_DataType.FLOAT16: out.push(halfToFloat(dv.getUint16(o, true))); break;
        case TensorProto_DataType.BFLOAT16: {
          const b = new DataView(new ArrayBuffer(4));
          b.setUint32(0, dv.getUint16(o, true) << 16);
          out.push(b.getFloat32(0));
          break;
        }
        default: return undefined;
      }
    }
    return out;
  }
  if (hasElidedPayload(t)) return undefined;
  let vals: number[] | undefined;
  if (t.floatData.length) vals = t.floatData;
  else if (t.int64Data.length) vals = t.int64Data.map(Number);
  else if (t.int32Data.length) {
    vals = dt === TensorProto_DataType.FLOAT16 ? t.int32Data.map(halfToFloat) : t.int32Data;
  } else if (t.doubleData.length) vals = t.doubleData;
  else if (t.uint64Data.length) vals = t.uint64Data.map(Number);
  else vals = count === 0 ? [] : undefined;
  if (vals && vals.length !== count) return undefined;
  return vals ? [...vals] : undefined;
}
