// Which tensors of a graph are provably all zeros, by ONNX semantics alone. Exporters leave such
// tensors on the attention scores: torch's baddbmm(empty, q, k^T, beta=0) (diffusers' classic
// AttnProcessor, most SD 1.x ONNX files) becomes Add(scores, zeros), with the zeros a folded
// Constant/initializer (static shapes) or Mul(ConstantOfShape(shape), 0) (dynamic shapes). Adding
// them changes nothing, so they are no mask; merging must still drop them, as their shape bakes
// the sequence length.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { TensorProto_DataType, type TensorProto } from './gen/onnx_pb';
import { attr, type GraphIndex } from './graph';
import { isExternal, payloadOf } from './model';

/** Ops whose output is all zeros when their (first) data input is: layout and casts. */
const ZERO_PRESERVING = new Set(['Identity', 'Cast', 'CastLike', 'Reshape', 'Expand', 'Unsqueeze', 'Squeeze', 'Flatten', 'Transpose', 'Neg', 'Tile']);

const CHUNK = 1 << 20;

/** Whether every element of a constant tensor is +0 or -0 (reads payloads in chunks, external data included). */
export function constantIsZero(g: GraphIndex, t: TensorProto): boolean {
  const dt = t.dataType;
  const size = ELEMENT_BYTES[dt];
  if (!size) return false;
  const zeroBytes = (b: Uint8Array): boolean => {
    // float types: the sign bit alone is still zero
    const signMask = dt === TensorProto_DataType.FLOAT || dt === TensorProto_DataType.DOUBLE || dt === TensorProto_DataType.FLOAT16 || dt === TensorProto_DataType.BFLOAT16 ? size - 1 : -1;
    for (let i = 0; i < b.length; i++) {
      const v = b[i];
      if (v === 0) continue;
      if (v === 0x80 && i % size === signMask) continue;
      return false;
    }
    return true;
  };
  const typed = [t.floatData, t.doubleData, t.int32Data, t.int64Data, t.uint64Data] as Array<ArrayLike<number | bigint>>;
  for (const a of typed) if (a.length) return Array.from(a).every((x) => Number(x) === 0);
  if (t.rawData && t.rawData.length) return zeroBytes(t.rawData);
  const count = t.dims.reduce((a, d) => a * Number(d), 1);
  if (count === 0) return true;
  if (isExternal(t)) {
    const kv = new Map(t.externalData.map((e) => [e.key, e.value]));
    const loc = kv.get('location');
    const dir = g.model?.source.dir;
    if (!loc || !dir) return false;
    const offset = Number(kv.get('offset') ?? 0);
    const length = Number(kv.get('length') ?? count * size);
    return rangeIsZero(path.resolve(dir, loc), offset, length, zeroBytes);
  }
  const ref = payloadOf(t);
  const src = g.model?.source;
  if (!ref || !src || ref.field !== 9) return false;
  if (src.bytes) return zeroBytes(src.bytes.subarray(ref.offset, ref.offset + ref.length));
  if (!src.path) return false;
  return rangeIsZero(src.path, ref.offset, ref.length, zeroBytes);
}

function rangeIsZero(file: string, offset: number, length: number, zeroBytes: (b: Uint8Array) => boolean): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return false;
  }
  try {
    // chunks are multiples of 8 bytes, so an element never straddles two of them
    const buf = new Uint8Array(Math.min(CHUNK, length));
    for (let done = 0; done < length; ) {
      const want = Math.min(buf.length, length - done);
      const n = fs.readSync(fd, buf, 0, want, offset + done);
      if (n !== want) return false;
      if (!zeroBytes(buf.subarray(0, n))) return false;
      done += n;
    }
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

const ELEMENT_BYTES: Partial<Record<number, number>> = {
  [TensorProto_DataType.FLOAT]: 4,
  [TensorProto_DataType.DOUBLE]: 8,
  [TensorProto_DataType.FLOAT16]: 2,
  [TensorProto_DataType.BFLOAT16]: 2,
  [TensorProto_DataType.INT64]: 8,
  [TensorProto_DataType.INT32]: 4,
  [TensorProto_DataType.INT16]: 2,
  [TensorProto_DataType.INT8]: 1,
  [TensorProto_DataType.UINT8]: 1,
  [TensorProto_DataType.UINT64]: 8,
  [TensorProto_DataType.UINT32]: 4,
  [TensorProto_DataType.UINT16]: 2,
  [TensorProto_DataType.BOOL]: 1,
};

/**
 * Whether tensor `name` is all zeros whatever the graph's inputs: a zero constant, ConstantOfShape
 * with a zero (or default) value, a zero-preserving op of one, or a Mul of one by a constant (an
 * activation times zero is not zero when it holds Inf or NaN, so that never counts).
 */
export function provablyZero(g: GraphIndex, name: string, depth = 0): boolean {
  if (!name || depth > 8) return false;
  const c = g.constTensor(name);
  if (c) return constantIsZero(g, c);
  const p = g.producer(name);
  if (!p || (p.domain !== '' && p.domain !== 'ai.onnx')) return false;
  if (p.opType === 'ConstantOfShape') {
    const v = attr(p, 'value')?.t;
    return !v || constantIsZero(g, v);
  }
  if (ZERO_PRESERVING.has(p.opType)) return provablyZero(g, p.input[0], depth + 1);
  if (p.opType === 'Mul' && p.input.length === 2) {
    const [a, b] = p.input;
    const finiteConst = (x: string) => {
      const t = g.constTensor(x);
      if (!t) return provablyZero(g, x, depth + 1);
      const v = g.constValues(x, 1 << 16);
      return v !== undefined && v.every(Number.isFinite);
    };
    return (provablyZero(g, a, depth + 1) && finiteConst(b)) || (provablyZero(g, b, depth + 1) && finiteConst(a));
  }
  return false;
}
