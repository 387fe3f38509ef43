// toma.onnx.inspect: the SPEC section 8 report, and clear answers on graphs it does not know.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as toma from '../../lib';
import { OnnxFormatError } from '../../lib/onnx/model';
import { PPOCR, fixture, floatTensor, int64Tensor, ints, model, modelBytes, node, tmpDir, vi } from './helpers';
import { create } from '@bufbuild/protobuf';
import { AttributeProtoSchema, AttributeProto_AttributeType, TensorProtoSchema } from '../../lib/onnx/gen/onnx_pb';

const SPEC_KEYS = ['name', 'kind', 'heads', 'channels', 'patchable'];

describe('inspect on the fixtures', () => {
  test('is exported as toma.onnx.inspect and reports SPEC fields per block', async () => {
    expect(typeof toma.onnx.inspect).toBe('function');
    const r = await toma.onnx.inspect(fixture('sd_transformer_32x32.onnx'));
    expect(r.blocks).toHaveLength(4);
    for (const b of r.blocks) {
      for (const k of SPEC_KEYS) expect(b).toHaveProperty(k);
      expect(b.grid).toEqual([32, 32]);
      expect(['self', 'cross', 'joint']).toContain(b.kind);
      if (!b.patchable) expect(typeof b.reason).toBe('string');
      expect(b.match.boundaries.normOutput).toBeTruthy();
    }
    expect(r.model).toMatchObject({ irVersion: 8, opsets: [{ domain: '', version: 17 }], externalData: [] });
    expect(r.model.weightBytesInFile).toBeGreaterThan(700_000);
    expect(JSON.parse(JSON.stringify(r.blocks[0].grid))).toEqual([32, 32]); // plain JSON
  });

  test('flux: joint with prefix and no grid; PP-OCRv4: two self blocks; external data is listed', async () => {
    const f = await toma.onnx.inspect(fixture('flux_joint.onnx'));
    expect(f.blocks.map((b) => [b.kind, b.prefix, b.grid, b.patchable])).toEqual([['joint', 512, undefined, true]]);
    expect('grid' in f.blocks[0]).toBe(false);
    const p = await toma.onnx.inspect(PPOCR);
    expect(p.blocks.map((b) => [b.kind, b.heads, b.channels])).toEqual([
      ['self', 8, 120],
      ['self', 8, 120],
    ]);
    const e = await toma.onnx.inspect(fixture('sd_transformer_32x32_ext.onnx'));
    expect(e.model.externalData).toEqual(['sd_transformer_32x32_ext.onnx.data']);
    expect(e.blocks.map((b) => b.kind)).toEqual(['self', 'cross', 'self', 'cross']);
  });
});

describe('inspect on graphs it does not know', () => {
  const dir = tmpDir('insp');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const save = (name: string, m: ReturnType<typeof model>) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, modelBytes(m));
    return p;
  };
  // scores = q @ k^T * 0.25 -> softmax -> @ v, with q/k/v given
  const core = (q: string, k: string, v: string, out: string, extra: ReturnType<typeof node>[] = []) => [
    node('Transpose', [k], ['kT'], [ints('perm', [0, 2, 1])]),
    node('MatMul', [q, 'kT'], ['s']),
    node('Mul', ['s', 'scale'], ['ss']),
    ...extra,
    node('Softmax', [extra.length ? 'sm_in' : 'ss'], ['p'], [create(AttributeProtoSchema, { name: 'axis', type: AttributeProto_AttributeType.INT, i: -1n })]),
    node('MatMul', ['p', v], [out]),
  ];
  const scale = () => create(TensorProtoSchema, { name: 'scale', dims: [], dataType: 1, floatData: [0.25] });

  test('attention on graph inputs (no projections): a block, not patchable, with the reason', async () => {
    const m = model(core('Q', 'K', 'V', 'O'), [scale()], [vi('Q', [1, 16, 8]), vi('K', [1, 16, 8]), vi('V', [1, 16, 8])], [vi('O', [1, 16, 8])]);
    const r = await toma.onnx.inspect(save('bare.onnx', m));
    expect(r.blocks).toHaveLength(1);
    expect(r.blocks[0].patchable).toBe(false);
    expect(r.blocks[0].reason).toMatch(/untraced: q: reaches graph input Q without a projection/);
    // no output projection is a fact, not a failure (segment mode cuts at the head-merged output)
    expect(r.blocks[0].reason).not.toMatch(/output projection/);
    expect(r.blocks[0].notes.join('; ')).toMatch(/not followed by an output projection/);
  });

  test('an additive mask on the scores blocks patching', async () => {
    const x = vi('X', [1, 16, 8]);
    const nodes = [
      node('MatMul', ['X', 'Wq'], ['q']),
      node('MatMul', ['X', 'Wk'], ['k']),
      node('MatMul', ['X', 'Wv'], ['v']),
      ...core('q', 'k', 'v', 'a', [node('Add', ['ss', 'mask'], ['sm_in'])]),
      node('MatMul', ['a', 'Wo'], ['O']),
    ];
    const inits = ['Wq', 'Wk', 'Wv', 'Wo'].map((n, i) => floatTensor(n, [8, 8], i + 1));
    const m = model(nodes, [...inits, scale(), floatTensor('mask', [16, 16], 9)], [x], [vi('O', [1, 16, 8])]);
    const r = await toma.onnx.inspect(save('mask.onnx', m));
    expect(r.blocks).toHaveLength(1);
    expect(r.blocks[0]).toMatchObject({ kind: 'self', patchable: false });
    expect(r.blocks[0].reason).toMatch(/additive mask or bias/);
    expect(r.blocks[0].hazards.map((h) => h.kind)).toEqual(['attention-bias']);
  });

  test('a model without attention: no blocks, the Softmax is listed as skipped', async () => {
    const m = model(
      [node('MatMul', ['X', 'W'], ['l']), node('Softmax', ['l'], ['P'])],
      [floatTensor('W', [8, 4])],
      [vi('X', [1, 8])],
      [vi('P', [1, 4])],
    );
    const r = await toma.onnx.inspect(save('cls.onnx', m));
    expect(r.blocks).toEqual([]);
    expect(r.skipped).toEqual([{ node: expect.any(String), reason: expect.stringMatching(/classifier, not attention/) }]);
  });

  test('com.microsoft::Attention (packed QKV) is found; an MHA fed by an unknown op gets a reason', async () => {
    const heads = create(AttributeProtoSchema, { name: 'num_heads', type: AttributeProto_AttributeType.INT, i: 2n });
    const m = model(
      [
        node('Attention', ['X', 'W', 'B'], ['a'], [heads], { domain: 'com.microsoft' }),
        node('MatMul', ['a', 'Wo'], ['O']),
        node('Sin', ['X'], ['sx']),
        node('MultiHeadAttention', ['sx', 'sx', 'sx'], ['m'], [heads], { domain: 'com.microsoft' }),
        node('MatMul', ['m', 'Wo'], ['O2']),
      ],
      [floatTensor('W', [32, 96]), floatTensor('B', [96]), floatTensor('Wo', [32, 32])],
      [vi('X', [1, 16, 32])],
      [vi('O', [1, 16, 32]), vi('O2', [1, 16, 32])],
      true,
    );
    const r = await toma.onnx.inspect(save('fused.onnx', m));
    expect(r.blocks.map((b) => [b.form, b.kind, b.heads, b.channels, b.patchable])).toEqual([
      ['Attention', 'self', 2, 32, true],
      ['MultiHeadAttention', 'self', 2, 0, false],
    ]);
    expect(r.blocks[1].reason).toMatch(/cannot trace through Sin/);
  });

  test('a Reshape shape computed from a constant that bakes the sequence length is reported with its rewrite', async () => {
    // q projection -> Reshape([1, 16, 2, 4]) -> Transpose(0,2,1,3); the 16 is the sequence length
    const nodes = [
      ...['q', 'k', 'v'].flatMap((s) => [
        node('MatMul', ['X', `W${s}`], [`${s}p`]),
        node('Reshape', [`${s}p`, 'shape'], [`${s}r`]),
        node('Transpose', [`${s}r`], [`${s}h`], [ints('perm', [0, 2, 1, 3])]),
      ]),
      node('Transpose', ['kh'], ['kT'], [ints('perm', [0, 1, 3, 2])]),
      node('MatMul', ['qh', 'kT'], ['s']),
      node('Softmax', ['s'], ['p']),
      node('MatMul', ['p', 'vh'], ['o']),
      node('Transpose', ['o'], ['ot'], [ints('perm', [0, 2, 1, 3])]),
      node('Reshape', ['ot', 'oshape'], ['om']),
      node('MatMul', ['om', 'Wo'], ['O']),
    ];
    const inits = [...['Wq', 'Wk', 'Wv', 'Wo'].map((n, i) => floatTensor(n, [8, 8], i + 1)), int64Tensor('shape', [1, 16, 2, 4]), int64Tensor('oshape', [1, 16, 8])];
    const r = await toma.onnx.inspect(save('baked.onnx', model(nodes, inits, [vi('X', [1, 16, 8])], [vi('O', [1, 16, 8])])));
    expect(r.blocks).toHaveLength(1);
    const b = r.blocks[0];
    expect(b).toMatchObject({ kind: 'self', heads: 2, channels: 8, patchable: true });
    expect(b.hazards.map((h) => h.rewrite)).toEqual(
      expect.arrayContaining([
        { node: expect.any(String), input: 'shape', index: 1, from: 16, to: -1 },
        { node: expect.any(String), input: 'oshape', index: 1, from: 16, to: -1 },
      ]),
    );
  });

  test('a truncated or corrupt file rejects with a clear OnnxFormatError; a missing one with ENOENT', async () => {
    const full = fs.readFileSync(fixture('flux_joint.onnx'));
    const cut = path.join(dir, 'cut.onnx');
    fs.writeFileSync(cut, full.subarray(0, 300_000));
    await expect(toma.onnx.inspect(cut)).rejects.toThrow(OnnxFormatError);
    await expect(toma.onnx.inspect(cut)).rejects.toThrow(/cut\.onnx.*(truncated|corrupt)/);
    const bad = path.join(dir, 'bad.onnx');
    fs.writeFileSync(bad, Buffer.from('{"not": "onnx"}'));
    await expect(toma.onnx.inspect(bad)).rejects.toThrow(OnnxFormatError);
    await expect(toma.onnx.inspect(path.join(dir, 'nope.onnx'))).rejects.toThrow(/ENOENT/);
  });
});
