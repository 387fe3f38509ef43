// The ONNX reader/writer: lossless round trips (every fixture and PP-OCRv4), unknown fields,
// weights kept out of JavaScript, corrupt input.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { clone, create, equals, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AttributeProtoSchema, ModelProtoSchema, TensorProtoSchema, TensorProto_DataType } from '../../lib/onnx/gen/onnx_pb';
import { decodeModel, encodeModel, payloadOf, readModel, writeModel, OnnxFormatError, type OnnxModel } from '../../lib/onnx/model';
import { PLACEHOLDER_FIELD, WIRE_LEN, WIRE_VARINT } from '../../lib/onnx/wire';
import { ALL_FIXTURES, PPOCR, fixture, floatTensor, model, modelBytes, node, relErr, runModel, tmpDir, vi } from './helpers';

const MODELS = [...ALL_FIXTURES.map(fixture), PPOCR];

describe('round trip', () => {
  test.each(MODELS.map((m) => [path.basename(m), m]))('%s: decode + encode is byte-identical and re-decodes to the same structure', async (_, file) => {
    const original = fs.readFileSync(file);
    const m = await readModel(file);
    const bytes = encodeModel(m);
    expect(Buffer.compare(Buffer.from(bytes), original)).toBe(0);
    // the full decode of both (no elision) is the same message
    const a = fromBinary(ModelProtoSchema, original);
    const b = fromBinary(ModelProtoSchema, bytes);
    expect(equals(ModelProtoSchema, a, b)).toBe(true);
    // and the elided decode of the re-encoded bytes has the same skeleton
    const again = decodeModel(bytes);
    expect(toBinary(ModelProtoSchema, again.proto).length).toBe(toBinary(ModelProtoSchema, m.proto).length);
  });

  test('the writer output runs in onnxruntime-node with identical outputs (embedded weights)', async () => {
    const dir = tmpDir('rt');
    for (const f of ['sd_transformer_32x32.onnx', 'flux_joint.onnx', 'sd_transformer_64x64_mha.onnx']) {
      const m = await readModel(fixture(f));
      const out = path.join(dir, f);
      await writeModel(m, out);
      const [x, y] = [await runModel(fixture(f)), await runModel(out)];
      for (const k of Object.keys(x)) expect(Buffer.compare(Buffer.from(x[k].buffer), Buffer.from(y[k].buffer))).toBe(0);
    }
    // PP-OCRv4: x is [N, 3, 48, W]
    const m = await readModel(PPOCR);
    const out = path.join(dir, 'ppocr.onnx');
    await writeModel(m, out);
    const shape = { x: [1, 3, 48, 160] };
    const [x, y] = [await runModel(PPOCR, 3, shape), await runModel(out, 3, shape)];
    for (const k of Object.keys(x)) expect(relErr(x[k], y[k])).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('inline limit: any limit gives the same bytes; small tensors stay decoded, large ones are placeholders', async () => {
    const original = fs.readFileSync(fixture('sd_transformer_64x64.onnx'));
    for (const limit of [0, 64, 1024, 1 << 30]) {
      const m = decodeModel(original, { inlineLimit: limit });
      expect(Buffer.compare(Buffer.from(encodeModel(m)), original)).toBe(0);
      if (limit >= 1 << 30) expect(m.elided.count).toBe(0);
    }
    const m = decodeModel(original);
    const big = m.proto.graph!.initializer.find((t) => t.dims.length === 2)!;
    const ref = payloadOf(big)!;
    expect(ref.field).toBe(9);
    expect(ref.length).toBe(Number(big.dims[0] * big.dims[1]) * 4);
    expect(big.rawData.length).toBe(0);
    expect(() => decodeModel(original, { inlineLimit: -1 })).toThrow(RangeError);
  });

  test('placeholders survive clone()', () => {
    const m = decodeModel(fs.readFileSync(fixture('sd_transformer_64x64.onnx')));
    const c: OnnxModel = { ...m, proto: clone(ModelProtoSchema, m.proto) };
    expect(Buffer.compare(Buffer.from(encodeModel(c)), Buffer.from(encodeModel(m)))).toBe(0);
  });
});

describe('unknown fields', () => {
  function craft(): Uint8Array {
    // a small graph with a large initializer, then unknown fields at every level
    const w = floatTensor('W', [64, 64], 3);
    const c = floatTensor('c', [64, 32], 5);
    const constNode = node('Constant', [], ['C'], [create(AttributeProtoSchema, { name: 'value', type: 4, t: c })]);
    const m = model(
      [constNode, node('MatMul', ['X', 'W'], ['Y']), node('MatMul', ['Y', 'C'], ['Z'])],
      [w],
      [vi('X', [2, 64])],
      [vi('Z', [2, 32])],
    );
    const u = (no: number, wireType: number, data: number[]) => ({ no, wireType, data: Uint8Array.from(data) });
    m.$unknown = [u(1000, WIRE_VARINT, [42])];
    m.graph!.$unknown = [u(77, WIRE_LEN, [3, 1, 2, 3])];
    m.graph!.node[1].$unknown = [u(99, WIRE_LEN, [2, 0x68, 0x69])];
    m.graph!.initializer[0].$unknown = [u(55, WIRE_VARINT, [7])];
    m.graph!.node[0].attribute[0].t!.$unknown = [u(56, WIRE_LEN, [0])];
    m.graph!.input[0].$unknown = [u(20, WIRE_VARINT, [1])];
    return modelBytes(m);
  }

  test('fields unknown to the schema survive decode + encode byte for byte, at every level', async () => {
    const bytes = craft();
    const m = decodeModel(bytes);
    expect(m.elided.count).toBe(2); // W and the Constant's tensor
    expect(m.proto.$unknown?.map((f) => f.no)).toEqual([1000]);
    expect(m.proto.graph!.$unknown?.map((f) => f.no)).toEqual([77]);
    expect(m.proto.graph!.initializer[0].$unknown?.map((f) => f.no)).toEqual([PLACEHOLDER_FIELD, 55]);
    const out = encodeModel(m);
    expect(Buffer.compare(Buffer.from(out), Buffer.from(bytes))).toBe(0);
    // the file written by writeModel too, and onnxruntime still runs it
    const dir = tmpDir('unk');
    const file = path.join(dir, 'crafted.onnx');
    fs.writeFileSync(file, bytes);
    const read = await readModel(file);
    await writeModel(read, path.join(dir, 'copy.onnx'));
    expect(Buffer.compare(fs.readFileSync(path.join(dir, 'copy.onnx')), Buffer.from(bytes))).toBe(0);
    const r = await runModel(path.join(dir, 'copy.onnx'));
    expect(r.Z.length).toBe(64);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('edits to known fields keep the unknown ones', () => {
    const m = decodeModel(craft());
    m.proto.producerName = 'edited';
    const re = fromBinary(ModelProtoSchema, encodeModel(m));
    expect(re.producerName).toBe('edited');
    expect(re.$unknown?.map((f) => f.no)).toEqual([1000]);
    expect(re.graph!.node[1].$unknown?.map((f) => f.no)).toEqual([99]);
    expect(re.graph!.initializer[0].rawData.length).toBe(64 * 64 * 4);
  });

  test('a file that already uses the placeholder field number is refused', () => {
    const m = fromBinary(ModelProtoSchema, craft());
    m.graph!.initializer[0].$unknown = [{ no: PLACEHOLDER_FIELD, wireType: WIRE_LEN, data: Uint8Array.from([1, 0]) }];
    expect(() => decodeModel(toBinary(ModelProtoSchema, m))).toThrow(/reserved by toma/);
  });
});

describe('weights stay out of JavaScript', () => {
  test('PP-OCRv4 (weights in Constant nodes): the decoded skeleton holds under 2% of the file', async () => {
    const m = await readModel(PPOCR);
    const size = fs.statSync(PPOCR).size;
    expect(m.elided.bytes).toBeGreaterThan(size * 0.98);
    expect(toBinary(ModelProtoSchema, m.proto).length).toBeLessThan(size * 0.02);
  });

  test('a 96 MB embedded-weight model is read and written with a bounded heap', async () => {
    const dir = tmpDir('big');
    // the payload source: 96 MB of bytes on disk (never in the JS heap)
    const n = 24 << 20; // float32 elements
    const payload = path.join(dir, 'payload.bin');
    const fd = fs.openSync(payload, 'w');
    const chunk = new Float32Array(1 << 20).fill(0.5);
    for (let i = 0; i < n / chunk.length; i++) fs.writeSync(fd, new Uint8Array(chunk.buffer));
    fs.closeSync(fd);
    const st = fs.statSync(payload);
    // a model whose initializer W is a placeholder for that whole file
    const proto = model([node('Add', ['X', 'W'], ['Y'])], [], [vi('X', [n])], [vi('Y', [n])]);
    const w = create(TensorProtoSchema, { name: 'W', dims: [BigInt(n)], dataType: TensorProto_DataType.FLOAT });
    // placeholder content: length 7, then version 1, field 9 (raw_data), offset 0, length 96 MiB (varint)
    w.$unknown = [{ no: PLACEHOLDER_FIELD, wireType: WIRE_LEN, data: Uint8Array.from([7, 1, 9, 0, 0x80, 0x80, 0x80, 0x30]) }];
    proto.graph!.initializer.push(w);
    const synthetic: OnnxModel = {
      proto,
      source: { path: payload, dir, size: st.size, stat: { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs } },
      elided: { count: 1, bytes: st.size },
    };
    const big = path.join(dir, 'big.onnx');
    await writeModel(synthetic, big);
    expect(fs.statSync(big).size).toBeGreaterThan(n * 4);
    fs.rmSync(payload);

    global.gc?.();
    const before = process.memoryUsage();
    const m = await readModel(big);
    await writeModel(m, path.join(dir, 'copy.onnx'));
    const after = process.memoryUsage();
    const grew = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);
    expect(m.elided.bytes).toBe(n * 4);
    expect(grew).toBeLessThan(32 << 20); // 4 MiB copy buffer + 1 MiB read window + the graph
    const hash = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    expect(hash(path.join(dir, 'copy.onnx'))).toBe(hash(big));
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('corrupt input', () => {
  const dir = tmpDir('bad');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, data: Uint8Array | string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, data);
    return p;
  };

  test('a truncated file rejects with OnnxFormatError naming the file', async () => {
    const full = fs.readFileSync(fixture('sd_transformer_32x32.onnx'));
    for (const cut of [full.length - 1, Math.floor(full.length / 2), 100, 3]) {
      const p = write(`cut${cut}.onnx`, full.subarray(0, cut));
      await expect(readModel(p)).rejects.toThrow(OnnxFormatError);
      await expect(readModel(p)).rejects.toThrow(/truncated|corrupt|not a valid|not an ONNX|past the end/);
    }
  });

  test('garbage, text, an empty file and a directory reject clearly', async () => {
    const junk = new Uint8Array(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 2654435761) >>> 24;
    await expect(readModel(write('junk.onnx', junk))).rejects.toThrow(OnnxFormatError);
    await expect(readModel(write('text.onnx', 'this is not a model\n'))).rejects.toThrow(OnnxFormatError);
    await expect(readModel(write('empty.onnx', ''))).rejects.toThrow(/empty/);
    await expect(readModel(dir)).rejects.toThrow(/not a regular file/);
    await expect(readModel(path.join(dir, 'missing.onnx'))).rejects.toThrow(/ENOENT/);
    await expect(readModel('')).rejects.toThrow(TypeError);
  });
});
