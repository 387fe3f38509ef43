// The corpus of real diffusers exports (models/corpus, made by scripts/corpus/export.py from the
// diffusers sources): its manifest, with ground truth read from the torch module tree, and the
// seeded reference inputs and torch outputs stored beside the models.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';

export const CORPUS = process.env.TOMA_CORPUS ?? path.join(__dirname, '..', '..', 'models', 'corpus');

export interface TensorFile {
  name: string;
  dtype: string;
  shape: number[];
  file: string;
}

export interface Reference {
  name: string;
  inputs: TensorFile[];
  outputs: TensorFile[];
  batch?: number;
  latent?: [number, number];
}

export interface TruthBlock {
  module: string;
  onnx_scope: string;
  kind: 'self' | 'cross' | 'joint';
  heads: number;
  head_dim: number;
  channels: number;
  rope: boolean;
  qk_norm: string | null;
  context_pre_only: boolean;
  image_tokens: Record<string, number>;
  text_tokens: Record<string, number>;
  grid: Record<string, [number, number] | null>;
}

export interface CorpusModel {
  key: string;
  file: string;
  family: string;
  attention_path: string;
  shapes: string;
  dtype: string;
  references: Reference[];
  attention: TruthBlock[];
  counts: { self: number; cross: number; joint: number };
  tolerance: number;
  derived_from?: string | null;
}

export function corpus(): CorpusModel[] {
  const file = path.join(CORPUS, 'manifest.json');
  const m = JSON.parse(fs.readFileSync(file, 'utf8')) as { files: Record<string, Omit<CorpusModel, 'key'>> };
  return Object.entries(m.files).map(([key, v]) => ({ key, ...v }));
}

export function modelPath(m: CorpusModel): string {
  return path.join(CORPUS, m.file);
}

function readTensor(t: TensorFile): ort.Tensor {
  const buf = fs.readFileSync(path.join(CORPUS, t.file));
  const bytes = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  switch (t.dtype) {
    case 'float32':
      return new ort.Tensor('float32', new Float32Array(bytes), t.shape);
    case 'float16':
      return new ort.Tensor('float16', new Uint16Array(bytes), t.shape);
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(bytes), t.shape);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(bytes), t.shape);
    default:
      throw new Error(`corpus: unsupported dtype ${t.dtype} in ${t.file}`);
  }
}

export function feeds(ref: Reference): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const t of ref.inputs) out[t.name] = readTensor(t);
  return out;
}

export function outputs(ref: Reference): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const t of ref.outputs) out[t.name] = readTensor(t);
  return out;
}

/** Values of a float tensor as float64 (float16 decoded). */
export function values(t: ort.Tensor): Float64Array {
  if (t.type === 'float32') return Float64Array.from(t.data as Float32Array);
  if (t.type === 'float16') return Float64Array.from(t.data as Uint16Array, halfToFloat);
  throw new Error(`corpus: ${t.type} is not a float tensor`);
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** ||a - b|| / ||b||; NaN anywhere gives Infinity, never a pass. */
export function relDiff(a: ort.Tensor, b: ort.Tensor): number {
  const x = values(a);
  const y = values(b);
  if (x.length !== y.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - y[i];
    if (!Number.isFinite(d)) return Infinity;
    num += d * d;
    den += y[i] * y[i];
  }
  return Math.sqrt(num) / Math.sqrt(den || 1);
}
