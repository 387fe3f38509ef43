// ONNX model reader/writer that round-trips losslessly and keeps weights out of JavaScript.
//
// readModel(path) runs a wire-level pre-pass (wire.ts `elide`) that copies the model's bytes into a
// skeleton except the payloads of TensorProtos larger than `inlineLimit` bytes (initializers,
// Constant node values, sparse tensors, tensors inside subgraphs and functions). Each payload is
// replaced by a placeholder naming its byte range in the input file. @bufbuild/protobuf decodes the
// skeleton into typed messages (lib/onnx/gen/onnx_pb.ts); unknown fields, including the
// placeholders, are kept in each message's `$unknown` list. writeModel encodes the messages,
// expands the placeholders (wire.ts `expand`) and streams the payload ranges from the input file
// into a temporary file beside the output, then renames it into place. JavaScript holds the graph
// (nodes, small constants, shapes) and at most one copy buffer (4 MiB) of weights at a time.
//
// External data (TensorProto.data_location = EXTERNAL): the entries are kept as they are. Writing
// into the input's directory keeps every `location` valid (the intended use: patched.onnx beside
// model.onnx and model.onnx_data). Writing elsewhere rewrites each `location` to the relative path
// from the new directory to the same data file, by default only when that path stays inside the new
// directory (onnxruntime refuses paths that escape it); see WriteOptions.externalData. Data files
// are never copied, moved or read.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  ModelProtoSchema,
  TensorProto_DataLocation,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from './gen/onnx_pb';
import {
  BufferSource,
  OnnxFormatError,
  PLACEHOLDER_FIELD,
  WindowedSource,
  elide,
  expand,
  placeholderFromUnknown,
  type ByteSource,
  type PayloadRef,
  type Piece,
} from './wire';

export { OnnxFormatError } from './wire';
export type { PayloadRef } from './wire';

/** Payloads up to this many bytes stay inline in the decoded messages (shapes, scales, perms). */
export const DEFAULT_INLINE_LIMIT = 1024;

export interface ReadOptions {
  /** Tensor payload fields longer than this (bytes) stay in the file. Default 1024. */
  inlineLimit?: number;
}

/** Where the model's bytes came from; the writer streams elided payloads from here. */
export interface ModelSource {
  /** Absolute path of the .onnx file, when read from a file. */
  readonly path?: string;
  /** Directory that external data locations are relative to (the input's directory). */
  readonly dir?: string;
  readonly size: number;
  /** Identity of the file when it was read; the writer refuses if it changed since. */
  readonly stat?: { dev: number; ino: number; size: number; mtimeMs: number };
  /** In-memory source (decodeModel); undefined for files. */
  readonly bytes?: Uint8Array;
}

export interface OnnxModel {
  /** The decoded model. Large tensor payloads are placeholders: see payloadOf / hasElidedPayload. */
  readonly proto: ModelProto;
  readonly source: ModelSource;
  /** Payload fields left in the source, and their total size in bytes. */
  readonly elided: { count: number; bytes: number };
}

function decodeSkeleton(skeleton: Uint8Array, what: string): ModelProto {
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, skeleton, { readUnknownFields: true });
  } catch (e) {
    throw new OnnxFormatError(`${what} is not a valid ONNX model: ${(e as Error).message}`);
  }
  if (!proto.graph) {
    throw new OnnxFormatError(`${what} is not an ONNX model: it has no graph (ModelProto field 7); truncated or another kind of file`);
  }
  if (proto.opsetImport.length === 0) {
    throw new OnnxFormatError(`${what} has no opset_import (ModelProto field 8): the file is truncated or not an ONNX model`);
  }
  return proto;
}

/** Decodes a model held in memory (tests, small models). Payload refs point into `bytes`. */
export function decodeModel(bytes: Uint8Array, o: ReadOptions = {}): OnnxModel {
  const inlineLimit = checkInlineLimit(o.inlineLimit);
  let r;
  try {
    r = elide(new BufferSource(bytes), inlineLimit);
  } catch (e) {
    throw wrapFormat(e, 'the buffer');
  }
  return {
    proto: decodeSkeleton(r.skeleton, 'the buffer'),
    source: { size: bytes.length, bytes },
    elided: { count: r.count, bytes: r.bytes },
  };
}

/** Reads a model file without loading its large tensor payloads. */
export async function readModel(file: string, o: ReadOptions = {}): Promise<OnnxModel> {
  if (typeof file !== 'string' || file.length === 0) {
    throw new TypeError(`path: expected the path of an .onnx file, got ${typeof file === 'string' ? 'an empty string' : typeof file}`);
  }
  const inlineLimit = checkInlineLimit(o.inlineLimit);
  const abs = path.resolve(file);
  const fh = await fs.promises.open(abs, 'r');
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new TypeError(`path: ${abs} is not a regular file`);
    if (st.size === 0) throw new OnnxFormatError(`${abs} is empty: not an ONNX model`);
    const fd = fh.fd;
    const src = new WindowedSource((buf, off) => fs.readSync(fd, buf, 0, buf.length, off), st.size);
    let r;
    try {
      r = elide(src, inlineLimit);
    } catch (e) {
      throw wrapFormat(e, abs);
    }
    return {
      proto: decodeSkeleton(r.skeleton, abs),
      source: {
        path: abs,
        dir: path.dirname(abs),
        size: st.size,
        stat: { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs },
      },
      elided: { count: r.count, bytes: r.bytes },
    };
  } finally {
    await fh.close();
  }
}

function wrapFormat(e: unknown, what: string): Error {
  if (e instanceof OnnxFormatError) return new OnnxFormatError(`${what}: ${e.message}`);
  return e as Error;
}

function checkInlineLimit(v: number | undefined): number {
  if (v === undefined) return DEFAULT_INLINE_LIMIT;
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`inlineLimit: expected an integer >= 0, got ${v}`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// payload access

/** The elided payload of a tensor (a byte range of the model's source), if any. */
export function payloadOf(t: TensorProto): PayloadRef | undefined {
  const u = t.$unknown;
  if (!u) return undefined;
  for (const f of u) if (f.no === PLACEHOLDER_FIELD) return placeholderFromUnknown(f.data);
  return undefined;
}

export function hasElidedPayload(t: TensorProto): boolean {
  return t.$unknown?.some((f) => f.no === PLACEHOLDER_FIELD) ?? false;
}

export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === TensorProto_DataLocation.EXTERNAL;
}

/**
 * Reads an elided payload's bytes from the source (for small reads: a shape constant that happened
 * to exceed inlineLimit). Refuses more than `maxBytes` (default 1 MiB): weights stay in the file.
 */
export function readPayload(model: OnnxModel, ref: PayloadRef, maxBytes = 1 << 20): Uint8Array {
  if (ref.length > maxBytes) {
    throw new RangeError(`payload of ${ref.length} bytes exceeds maxBytes ${maxBytes}; weights are not loaded into JavaScript`);
  }
  const s = model.source;
  if (s.bytes) return s.bytes.slice(ref.offset, ref.offset + ref.length);
  if (!s.path) throw new Error('model has no source to read the payload from');
  const fd = fs.openSync(s.path, 'r');
  try {
    const out = new Uint8Array(ref.length);
    let done = 0;
    while (done < out.length) {
      const n = fs.readSync(fd, out, done, out.length - done, ref.offset + done);
      if (n <= 0) throw new OnnxFormatError(`${s.path} ended before the payload at ${ref.offset}`);
      done += n;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// walking every tensor (for external data rewrites and inventories)

export function* allTensors(proto: ModelProto): Generator<TensorProto> {
  if (proto.graph) yield* graphTensors(proto.graph);
  for (const f of proto.functions) for (const n of f.node) yield* nodeTensors(n);
  for (const f of proto.functions) for (const a of f.attributeProto) yield* attrTensors(a);
  for (const ti of proto.trainingInfo) {
    if (ti.initialization) yield* graphTensors(ti.initialization);
    if (ti.algorithm) yield* graphTensors(ti.algorithm);
  }
}

export function* graphTensors(g: GraphProto): Generator<TensorProto> {
  yield* g.initializer;
  for (const s of g.sparseInitializer) {
    if (s.values) yield s.values;
    if (s.indices) yield s.indices;
  }
  for (const n of g.node) yield* nodeTensors(n);
}

function* nodeTensors(n: NodeProto): Generator<TensorProto> {
  for (const a of n.attribute) yield* attrTensors(a);
}

function* attrTensors(a: AttributeProto): Generator<TensorProto> {
  if (a.t) yield a.t;
  yield* a.tensors;
  for (const s of [...(a.sparseTensor ? [a.sparseTensor] : []), ...a.sparseTensors]) {
    if (s.values) yield s.values;
    if (s.indices) yield s.indices;
  }
  if (a.g) yield* graphTensors(a.g);
  for (const g of a.graphs) yield* graphTensors(g);
}

/** External data files the model refers to (locations as written, unique). */
export function externalLocations(proto: ModelProto): string[] {
  const set = new Set<string>();
  for (const t of allTensors(proto)) {
    if (!isExternal(t)) continue;
    const loc = t.externalData.find((e) => e.key === 'location');
    if (loc) set.add(loc.value);
  }
  return [...set];
}

// ---------------------------------------------------------------------------------------------
// writing

export interface WriteOptions {
  /**
   * External data when writing into a directory other than the input's. Locations are always
   * rewritten to the relative path from the output's directory to the same data file; data files
   * are never copied or moved.
   * - 'inside' (default): only when every data file lies inside the output's directory (the input's
   *   directory, or an ancestor of it); otherwise refuse, because onnxruntime (1.30) rejects external
   *   data paths that escape the model's directory ("External data path escapes model directory").
   * - 'relocate': rewrite even when the path leaves the output's directory ("../x.onnx_data").
   * - 'error': refuse any change of directory for a model with external data.
   */
  externalData?: 'inside' | 'relocate' | 'error';
  /** fsync the file before the rename (default true). */
  fsync?: boolean;
}

export interface WriteReport {
  path: string;
  bytes: number;
  /** Payload ranges copied from the input file. */
  payloads: number;
  /** External data locations rewritten (old -> new), empty when written beside the input. */
  relocated: Array<{ from: string; to: string }>;
}

/** Bytes of the whole model in memory: for small models (tests, passing a buffer to a session). */
export function encodeModel(model: OnnxModel, maxBytes = 256 << 20): Uint8Array {
  const { pieces, size } = expand(toBinary(ModelProtoSchema, model.proto, { writeUnknownFields: true }));
  if (size > maxBytes) throw new RangeError(`model is ${size} bytes, more than maxBytes ${maxBytes}: use writeModel`);
  const out = new Uint8Array(size);
  let at = 0;
  const readSrc = sourceReader(model);
  try {
    for (const p of pieces) {
      if ('bytes' in p) {
        out.set(p.bytes, at);
        at += p.bytes.length;
      } else {
        readSrc.readInto(out.subarray(at, at + p.length), p.offset);
        at += p.length;
      }
    }
  } finally {
    readSrc.close();
  }
  return out;
}

function sourceReader(model: OnnxModel): { readInto(buf: Uint8Array, offset: number): void; close(): void } {
  const s = model.source;
  if (s.bytes) {
    const bytes = s.bytes;
    return {
      readInto(buf, offset) {
        if (offset + buf.length > bytes.length) throw new OnnxFormatError('payload range outside the source buffer');
        buf.set(bytes.subarray(offset, offset + buf.length));
      },
      close() {},
    };
  }
  if (!s.path || !s.stat) throw new Error('model has no source');
  let fd: number | undefined;
  return {
    readInto(buf, offset) {
      if (fd === undefined) {
        fd = fs.openSync(s.path!, 'r');
        const st = fs.fstatSync(fd);
        if (st.dev !== s.stat!.dev || st.ino !== s.stat!.ino || st.size !== s.stat!.size || st.mtimeMs !== s.stat!.mtimeMs) {
          throw new Error(`${s.path} changed since it was read; read the model again before writing`);
        }
      }
      let done = 0;
      while (done < buf.length) {
        const n = fs.readSync(fd, buf, done, buf.length - done, offset + done);
        if (n <= 0) throw new OnnxFormatError(`${s.path} ended before byte ${offset + buf.length}`);
        done += n;
      }
    },
    close() {
      if (fd !== undefined) fs.closeSync(fd);
    },
  };
}

/**
 * Writes the model to `outPath`: a temporary file in the same directory, then a rename. Never
 * writes the input file: refuses outPath equal to the input's path or naming the same file (inode).
 */
export async function writeModel(model: OnnxModel, outPath: string, o: WriteOptions = {}): Promise<WriteReport> {
  if (typeof outPath !== 'string' || outPath.length === 0) {
    throw new TypeError(`outPath: expected a file path, got ${typeof outPath === 'string' ? 'an empty string' : typeof outPath}`);
  }
  const out = path.resolve(outPath);
  const src = model.source;
  if (src.path && out === src.path) {
    throw new Error(`outPath: ${out} is the input model; toma never overwrites its input, choose another file`);
  }
  const outStat = await fs.promises.stat(out).catch(() => undefined);
  if (outStat && src.stat && outStat.dev === src.stat.dev && outStat.ino === src.stat.ino) {
    throw new Error(`outPath: ${out} is the same file as the input ${src.path} (a link); toma never overwrites its input`);
  }
  if (outStat && !outStat.isFile()) throw new Error(`outPath: ${out} exists and is not a regular file`);
  const outDir = path.dirname(out);

  // External data: relocate when the directory changes.
  const relocated: Array<{ from: string; to: string }> = [];
  const restore: Array<() => void> = [];
  const srcDir = src.dir;
  if (srcDir && path.resolve(srcDir) !== outDir) {
    const tensors = [...allTensors(model.proto)].filter(isExternal);
    const policy = o.externalData ?? 'inside';
    if (policy !== 'inside' && policy !== 'relocate' && policy !== 'error') {
      throw new TypeError(`externalData: expected 'inside', 'relocate' or 'error', got ${String(policy)}`);
    }
    if (tensors.length && policy === 'error') {
      throw new Error(`outPath: the model has external data relative to ${srcDir}; write the new model into that directory`);
    }
    const seen = new Map<string, string>();
    for (const t of tensors) {
      const entry = t.externalData.find((e) => e.key === 'location');
      if (!entry || path.isAbsolute(entry.value)) continue;
      const old = entry.value;
      let rel = seen.get(old);
      if (rel === undefined) {
        rel = path.relative(outDir, path.resolve(srcDir, old)).split(path.sep).join('/');
        if (policy === 'inside' && (rel === '..' || rel.startsWith('../'))) {
          for (const r of restore) r();
          throw new Error(
            `outPath: ${out} is outside the directory of the model's external data (${path.resolve(srcDir, old)}); ` +
              `onnxruntime refuses external data outside the model's directory: write the new model into ${srcDir} ` +
              `(or an ancestor directory), or pass externalData: 'relocate' for runtimes that allow it`,
          );
        }
        seen.set(old, rel);
        relocated.push({ from: old, to: rel });
      }
      entry.value = rel;
      restore.push(() => {
        entry.value = old;
      });
    }
  }

  let pieces: Piece[];
  let size: number;
  try {
    ({ pieces, size } = expand(toBinary(ModelProtoSchema, model.proto, { writeUnknownFields: true })));
  } finally {
    for (const r of restore) r();
  }

  const tmp = path.join(outDir, `.${path.basename(out)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.promises.open(tmp, 'wx');
  const reader = sourceReader(model);
  let payloads = 0;
  try {
    const chunk = new Uint8Array(4 << 20);
    let fill = 0;
    const flush = async () => {
      let done = 0;
      while (done < fill) done += (await fh.write(chunk, done, fill - done)).bytesWritten;
      fill = 0;
    };
    for (const p of pieces) {
      if ('bytes' in p) {
        let at = 0;
        while (at < p.bytes.length) {
          const n = Math.min(chunk.length - fill, p.bytes.length - at);
          chunk.set(p.bytes.subarray(at, at + n), fill);
          fill += n;
          at += n;
          if (fill === chunk.length) await flush();
        }
      } else {
        payloads++;
        let at = 0;
        while (at < p.length) {
          const n = Math.min(chunk.length - fill, p.length - at);
          reader.readInto(chunk.subarray(fill, fill + n), p.offset + at);
          fill += n;
          at += n;
          if (fill === chunk.length) await flush();
        }
      }
    }
    await flush();
    if (o.fsync !== false) await fh.sync();
    await fh.close();
    await fs.promises.rename(tmp, out);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fs.promises.unlink(tmp).catch(() => undefined);
    throw e;
  } finally {
    reader.close();
  }
  return { path: out, bytes: size, payloads, relocated };
}
