// Wire-level passes over an ONNX ModelProto that keep weights out of JavaScript.
//
// `elide` walks the protobuf wire format of a model file (read through a ByteSource, never whole)
// and copies every byte into a "skeleton" except the payload fields of large TensorProtos
// (raw_data, float_data, int32_data, string_data, int64_data, double_data, uint64_data). Each such
// field is replaced by a small placeholder field (number PLACEHOLDER_FIELD) that records where the
// payload lives in the source: { field number, byte offset, byte length }. The skeleton is what
// @bufbuild/protobuf decodes; the placeholders land in each TensorProto's `$unknown` list and
// survive decode, clone and encode untouched.
//
// `expand` walks an encoded skeleton and turns each placeholder back into the original field,
// fixing the length prefix of every enclosing message, and returns the output as a list of pieces:
// bytes from the skeleton and byte ranges of the source that the writer copies through verbatim.
//
// Only the message types that can (transitively) hold a TensorProto are descended into; see CHILDREN.
// Field numbers are from onnx/onnx onnx.proto.

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_SGROUP = 3;
export const WIRE_EGROUP = 4;
export const WIRE_I32 = 5;

/** The largest legal field number; no ONNX message uses it. Holds payload placeholders. */
export const PLACEHOLDER_FIELD = 536870911;
const PLACEHOLDER_VERSION = 1;

/** Thrown for bytes that are not a well-formed ONNX model (truncated, corrupt, not protobuf). */
export class OnnxFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxFormatError';
  }
}

/** Random-access bytes: a file read piecewise, or a buffer. */
export interface ByteSource {
  readonly size: number;
  /** Returns `length` bytes at `offset` (may be a view into a cache; copy before keeping). */
  read(offset: number, length: number): Uint8Array;
}

export class BufferSource implements ByteSource {
  constructor(readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.length;
  }
  read(offset: number, length: number): Uint8Array {
    return this.bytes.subarray(offset, offset + length);
  }
}

/** Reads through a sliding window so that skipping a payload never reads it. */
export class WindowedSource implements ByteSource {
  private window = new Uint8Array(0);
  private windowStart = 0;
  constructor(
    private readonly readAt: (buf: Uint8Array, offset: number) => number,
    readonly size: number,
    private readonly windowSize = 1 << 20,
  ) {}
  read(offset: number, length: number): Uint8Array {
    if (offset < 0 || offset + length > this.size) {
      throw new OnnxFormatError(`read of ${length} bytes at ${offset} runs past the end (${this.size} bytes)`);
    }
    if (offset >= this.windowStart && offset + length <= this.windowStart + this.window.length) {
      const at = offset - this.windowStart;
      return this.window.subarray(at, at + length);
    }
    if (length > this.windowSize) {
      const out = new Uint8Array(length);
      this.fill(out, offset);
      return out;
    }
    const n = Math.min(this.windowSize, this.size - offset);
    if (this.window.length !== this.windowSize) this.window = new Uint8Array(this.windowSize);
    this.fill(this.window.subarray(0, n), offset);
    this.windowStart = offset;
    const view = this.window.subarray(0, n);
    return view.subarray(0, length);
  }
  private fill(buf: Uint8Array, offset: number): void {
    let done = 0;
    while (done < buf.length) {
      const got = this.readAt(buf.subarray(done), offset + done);
      if (got <= 0) throw new OnnxFormatError(`unexpected end of file at byte ${offset + done}`);
      done += got;
    }
  }
}

export type MessageKind = 'model' | 'graph' | 'node' | 'attribute' | 'tensor' | 'sparse' | 'function' | 'training';

/** Length-delimited fields that hold messages which may (transitively) contain a TensorProto. */
export const CHILDREN: Readonly<Record<MessageKind, Readonly<Record<number, MessageKind>>>> = {
  model: { 7: 'graph', 20: 'training', 25: 'function' },
  graph: { 1: 'node', 5: 'tensor', 15: 'sparse' },
  node: { 5: 'attribute' },
  attribute: { 5: 'tensor', 6: 'graph', 10: 'tensor', 11: 'graph', 22: 'sparse', 23: 'sparse' },
  tensor: {},
  sparse: { 1: 'tensor', 2: 'tensor' },
  function: { 7: 'node', 11: 'attribute' },
  training: { 1: 'graph', 2: 'graph' },
};

/** TensorProto fields that carry the tensor's data. */
export const TENSOR_PAYLOAD_FIELDS: ReadonlySet<number> = new Set([4, 5, 6, 7, 9, 10, 11]);

/** Where an elided payload lives in the source. */
export interface PayloadRef {
  /** TensorProto field number it came from (9 = raw_data, 4 = float_data, ...). */
  field: number;
  /** Byte offset of the payload (after the length prefix) in the source. */
  offset: number;
  /** Payload length in bytes. */
  length: number;
}

// ---------------------------------------------------------------------------------------------
// varints (numbers up to 2^53; lengths and offsets never need more)

function readVarintAt(src: ByteSource, pos: number, end: number): [number, number] {
  const avail = Math.min(10, end - pos);
  if (avail <= 0) throw new OnnxFormatError(`truncated varint at byte ${pos}`);
  const b = src.read(pos, avail);
  let value = 0;
  let mul = 1;
  for (let i = 0; i < avail; i++) {
    const byte = b[i];
    value += (byte & 0x7f) * mul;
    if ((byte & 0x80) === 0) return [value, pos + i + 1];
    mul *= 128;
  }
  throw new OnnxFormatError(`truncated or overlong varint at byte ${pos}`);
}

export function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

export function writeVarint(out: number[], v: number): void {
  while (v >= 128) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function tagBytes(fieldNo: number, wireType: number): number[] {
  const out: number[] = [];
  writeVarint(out, fieldNo * 8 + wireType);
  return out;
}

// ---------------------------------------------------------------------------------------------
// skipping one field

function skipField(src: ByteSource, wireType: number, fieldNo: number, pos: number, end: number, depth = 0): number {
  switch (wireType) {
    case WIRE_VARINT:
      return readVarintAt(src, pos, end)[1];
    case WIRE_I64:
      return checkEnd(pos + 8, end, pos, fieldNo);
    case WIRE_I32:
      return checkEnd(pos + 4, end, pos, fieldNo);
    case WIRE_LEN: {
      const [len, p] = readVarintAt(src, pos, end);
      return checkEnd(p + len, end, pos, fieldNo);
    }
    case WIRE_SGROUP: {
      if (depth > 64) throw new OnnxFormatError(`groups nested too deeply at byte ${pos}`);
      let p = pos;
      for (;;) {
        const [tag, q] = readVarintAt(src, p, end);
        const wt = tag % 8;
        const fn = Math.floor(tag / 8);
        if (wt === WIRE_EGROUP) {
          if (fn !== fieldNo) throw new OnnxFormatError(`mismatched end-group tag at byte ${p}`);
          return q;
        }
        p = skipField(src, wt, fn, q, end, depth + 1);
      }
    }
    default:
      throw new OnnxFormatError(`invalid wire type ${wireType} for field ${fieldNo} at byte ${pos}`);
  }
}

function checkEnd(next: number, end: number, pos: number, fieldNo: number): number {
  if (next > end) {
    throw new OnnxFormatError(
      `field ${fieldNo} at byte ${pos} runs ${next - end} bytes past the end of its message: the file is truncated or corrupt`,
    );
  }
  return next;
}

// ---------------------------------------------------------------------------------------------
// pieces

/** A piece of output: bytes held in JS, or a byte range of the source copied through. */
export type Piece = { bytes: Uint8Array } | { offset: number; length: number };

class PieceList {
  readonly pieces: Piece[] = [];
  size = 0;
  bytes(b: Uint8Array | number[]): void {
    const u = b instanceof Uint8Array ? b : Uint8Array.from(b);
    if (u.length === 0) return;
    this.pieces.push({ bytes: u });
    this.size += u.length;
  }
  range(offset: number, length: number): void {
    if (length === 0) return;
    const last = this.pieces[this.pieces.length - 1];
    if (last && 'offset' in last && last.offset + last.length === offset) {
      last.length += length;
    } else {
      this.pieces.push({ offset, length });
    }
    this.size += length;
  }
  append(other: PieceList): void {
    for (const p of other.pieces) {
      if ('bytes' in p) this.bytes(p.bytes);
      else this.range(p.offset, p.length);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// elide: source model -> skeleton

export interface ElideResult {
  skeleton: Uint8Array;
  /** Number of payload fields elided, and their bytes. */
  count: number;
  bytes: number;
}

export function elide(src: ByteSource, inlineLimit: number): ElideResult {
  const stats = { count: 0, bytes: 0 };
  const out = elideMessage(src, 0, src.size, 'model', inlineLimit, stats, 0);
  const skeleton = new Uint8Array(out.size);
  let at = 0;
  for (const p of out.pieces) {
    const b = 'bytes' in p ? p.bytes : src.read(p.offset, p.length);
    skeleton.set(b, at);
    at += b.length;
  }
  return { skeleton, count: stats.count, bytes: stats.bytes };
}

function elideMessage(
  src: ByteSource,
  start: number,
  end: number,
  kind: MessageKind,
  inlineLimit: number,
  stats: { count: number; bytes: number },
  depth: number,
): PieceList {
  if (depth > 100) throw new OnnxFormatError(`messages nested more than 100 deep at byte ${start}`);
  const out = new PieceList();
  const children = CHILDREN[kind];
  let run = start; // start of the run of bytes copied verbatim
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const [tag, p] = readVarintAt(src, pos, end);
    const wireType = tag % 8;
    const fieldNo = Math.floor(tag / 8);
    if (fieldNo === 0) throw new OnnxFormatError(`invalid field number 0 at byte ${fieldStart}: not an ONNX model, or corrupt`);
    if (wireType !== WIRE_LEN) {
      pos = skipField(src, wireType, fieldNo, p, end);
      continue;
    }
    const [len, dataStart] = readVarintAt(src, p, end);
    const dataEnd = checkEnd(dataStart + len, end, fieldStart, fieldNo);
    if (fieldNo === PLACEHOLDER_FIELD) {
      throw new OnnxFormatError(`field ${PLACEHOLDER_FIELD} at byte ${fieldStart} is reserved by toma and must not appear in a model file`);
    }
    const child = children[fieldNo];
    if (child !== undefined && len > inlineLimit) {
      const sub = elideMessage(src, dataStart, dataEnd, child, inlineLimit, stats, depth + 1);
      if (sub.size !== len || sub.pieces.length !== 1 || !('offset' in sub.pieces[0])) {
        out.range(run, fieldStart - run);
        out.bytes(tagBytes(fieldNo, WIRE_LEN));
        const lenBytes: number[] = [];
        writeVarint(lenBytes, sub.size);
        out.bytes(lenBytes);
        out.append(sub);
        run = dataEnd;
      }
    } else if (kind === 'tensor' && TENSOR_PAYLOAD_FIELDS.has(fieldNo) && len > inlineLimit) {
      out.range(run, fieldStart - run);
      out.bytes(placeholderField({ field: fieldNo, offset: dataStart, length: len }));
      stats.count++;
      stats.bytes += len;
      run = dataEnd;
    }
    pos = dataEnd;
  }
  if (pos !== end) throw new OnnxFormatError(`message at byte ${start} overruns its length`);
  out.range(run, end - run);
  return out;
}

/** The whole placeholder field (tag, length, content). */
export function placeholderField(ref: PayloadRef): number[] {
  const content: number[] = [];
  writeVarint(content, PLACEHOLDER_VERSION);
  writeVarint(content, ref.field);
  writeVarint(content, ref.offset);
  writeVarint(content, ref.length);
  const out = tagBytes(PLACEHOLDER_FIELD, WIRE_LEN);
  writeVarint(out, content.length);
  out.push(...content);
  return out;
}

/** Parses placeholder content (the bytes after the length prefix). */
export function parsePlaceholder(content: Uint8Array): PayloadRef {
  const s = new BufferSource(content);
  let [version, p] = readVarintAt(s, 0, content.length);
  if (version !== PLACEHOLDER_VERSION) throw new OnnxFormatError(`unknown payload placeholder version ${version}`);
  let field: number, offset: number, length: number;
  [field, p] = readVarintAt(s, p, content.length);
  [offset, p] = readVarintAt(s, p, content.length);
  [length, p] = readVarintAt(s, p, content.length);
  return { field, offset, length };
}

/** Reads a placeholder from an unknown-field entry's data (which starts with the length prefix). */
export function placeholderFromUnknown(data: Uint8Array): PayloadRef {
  const s = new BufferSource(data);
  const [len, p] = readVarintAt(s, 0, data.length);
  return parsePlaceholder(data.subarray(p, p + len));
}

// ---------------------------------------------------------------------------------------------
// expand: encoded skeleton -> output pieces

export interface ExpandResult {
  pieces: Piece[];
  size: number;
  /** Placeholders expanded. */
  count: number;
}

export function expand(skeleton: Uint8Array): ExpandResult {
  const src = new BufferSource(skeleton);
  const stats = { count: 0 };
  const list = expandMessage(src, 0, skeleton.length, 'model', stats, 0);
  // Skeleton ranges are returned as bytes; `offset` pieces refer to the model's source only.
  return { pieces: list.pieces, size: list.size, count: stats.count };
}

class OutList {
  readonly pieces: Piece[] = [];
  size = 0;
  constructor(private readonly skeleton: Uint8Array) {}
  skel(from: number, to: number): void {
    if (to > from) {
      this.pieces.push({ bytes: this.skeleton.subarray(from, to) });
      this.size += to - from;
    }
  }
  bytes(b: number[] | Uint8Array): void {
    const u = b instanceof Uint8Array ? b : Uint8Array.from(b);
    if (u.length) {
      this.pieces.push({ bytes: u });
      this.size += u.length;
    }
  }
  source(offset: number, length: number): void {
    if (length) {
      this.pieces.push({ offset, length });
      this.size += length;
    }
  }
  append(o: OutList): void {
    this.pieces.push(...o.pieces);
    this.size += o.size;
  }
}

function expandMessage(
  src: BufferSource,
  start: number,
  end: number,
  kind: MessageKind,
  stats: { count: number },
  depth: number,
): OutList & { changed?: boolean } {
  if (depth > 100) throw new OnnxFormatError('messages nested more than 100 deep');
  const out = new OutList(src.bytes) as OutList & { changed?: boolean };
  const children = CHILDREN[kind];
  let run = start;
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const [tag, p] = readVarintAt(src, pos, end);
    const wireType = tag % 8;
    const fieldNo = Math.floor(tag / 8);
    if (wireType !== WIRE_LEN) {
      pos = skipField(src, wireType, fieldNo, p, end);
      continue;
    }
    const [len, dataStart] = readVarintAt(src, p, end);
    const dataEnd = checkEnd(dataStart + len, end, fieldStart, fieldNo);
    if (fieldNo === PLACEHOLDER_FIELD) {
      const ref = parsePlaceholder(src.bytes.subarray(dataStart, dataEnd));
      out.skel(run, fieldStart);
      const head = tagBytes(ref.field, WIRE_LEN);
      writeVarint(head, ref.length);
      out.bytes(head);
      out.source(ref.offset, ref.length);
      stats.count++;
      out.changed = true;
      run = dataEnd;
    } else {
      const child = children[fieldNo];
      if (child !== undefined) {
        const sub = expandMessage(src, dataStart, dataEnd, child, stats, depth + 1);
        if (sub.changed) {
          out.skel(run, fieldStart);
          const head = tagBytes(fieldNo, WIRE_LEN);
          writeVarint(head, sub.size);
          out.bytes(head);
          out.append(sub);
          out.changed = true;
          run = dataEnd;
        }
      }
    }
    pos = dataEnd;
  }
  out.skel(run, end);
  return out;
}
