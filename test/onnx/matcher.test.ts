// The attention matcher on every fixture (raw and MultiHeadAttention forms) and on PP-OCRv4.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { matchAttention, type AttentionBlock } from '../../lib/onnx/matcher';
import { GraphIndex } from '../../lib/onnx/graph';
import { readModel, writeModel } from '../../lib/onnx/model';
import { PPOCR, fixture, relErr, runModel, tmpDir } from './helpers';

async function match(file: string) {
  return matchAttention(await readModel(file));
}

/** The SPEC fields of a block, for comparing forms. */
const spec = (b: AttentionBlock) => ({
  kind: b.kind,
  grid: b.grid,
  heads: b.heads,
  channels: b.channels,
  headDim: b.headDim,
  prefix: b.prefix,
  patchable: b.patchable,
});

describe.each([
  ['sd_transformer_32x32', 32, 64, 4],
  ['sd_transformer_64x64', 64, 32, 2],
])('%s (SD-style Transformer2DModel)', (name, grid, channels, heads) => {
  for (const form of ['', '_mha']) {
    test(`${form ? 'MultiHeadAttention' : 'raw MatMul/Softmax'} form: 2 self + 2 cross blocks with heads, channels, grid`, async () => {
      const { blocks, skipped } = await match(fixture(`${name}${form}.onnx`));
      expect(skipped).toEqual([]);
      expect(blocks.map((b) => [b.name, b.kind])).toEqual([
        ['/transformer_blocks.0/attn1', 'self'],
        ['/transformer_blocks.0/attn2', 'cross'],
        ['/transformer_blocks.1/attn1', 'self'],
        ['/transformer_blocks.1/attn2', 'cross'],
      ]);
      for (const b of blocks) {
        expect(b.form).toBe(form ? 'MultiHeadAttention' : 'matmul-softmax');
        expect(b.heads).toBe(heads);
        expect(b.channels).toBe(channels);
        expect(b.headDim).toBe(channels / heads);
        expect(b.grid).toEqual([grid, grid]);
        expect(b.tokens).toBe(grid * grid);
        expect(b.scale).toBeCloseTo(1 / Math.sqrt(channels / heads), 6);
        expect(b.hazards).toEqual([]);
        expect(b.patchable).toBe(b.kind === 'self');
        if (b.kind === 'cross') {
          expect(b.reason).toMatch(/cross-attention/);
          expect(b.boundaries.k.projections[0].input).toBe('encoder_hidden_states');
          expect(b.boundaries.v.projections[0].input).toBe('encoder_hidden_states');
          expect(b.boundaries.k.projections[0].inFeatures).toBe(96); // C_text != C
        } else {
          expect(b.reason).toBeUndefined();
        }
      }
    });
  }

  test('boundaries of a self-attention block: norm output, q/k/v projections, head merge, to_out', async () => {
    const { blocks } = await match(fixture(`${name}.onnx`));
    const b = blocks[0];
    const p = '/transformer_blocks.0/attn1';
    expect(b.boundaries.normOutput).toBe('/transformer_blocks.0/norm1/LayerNormalization_output_0');
    expect(b.boundaries.normOp).toBe('LayerNormalization');
    expect(b.boundaries.q.projections.map((x) => x.node)).toEqual([`${p}/to_q/MatMul`]);
    expect(b.boundaries.k.projections.map((x) => x.node)).toEqual([`${p}/to_k/MatMul`]);
    expect(b.boundaries.v.projections.map((x) => x.node)).toEqual([`${p}/to_v/MatMul`]);
    for (const s of [b.boundaries.q, b.boundaries.k, b.boundaries.v]) expect(s.projections[0].input).toBe(b.boundaries.normOutput);
    expect(b.boundaries.toOut).toMatchObject({ node: `${p}/to_out/MatMul`, biasNode: `${p}/to_out/Add`, output: `${p}/to_out/Add_output_0` });
    expect(b.boundaries.toOut!.input).toBe(b.boundaries.headMerge.output);
    expect(b.boundaries.core.softmax).toBe(`${p}/Softmax`);
    expect(b.boundaries.q.rope).toBeUndefined();
    // the head-merged output is a [B, N, C] tensor that the graph produces
    const m = await readModel(fixture(`${name}.onnx`));
    expect(new GraphIndex(m.proto.graph!).producer(b.boundaries.headMerge.output)?.opType).toBe('Reshape');
  });

  test('block 1 scales q and k by sqrt(scale) computed at run time (Shape -> ... -> Sqrt)', async () => {
    const { blocks } = await match(fixture(`${name}.onnx`));
    const b = blocks[2];
    expect(b.boundaries.q.scaleNodes).toHaveLength(1);
    expect(b.boundaries.k.scaleNodes).toHaveLength(1);
    expect(b.scale).toBeCloseTo(1 / Math.sqrt(channels / heads), 6);
  });
});

describe('flux_joint (Flux-style double-stream block)', () => {
  for (const form of ['', '_mha']) {
    test(`${form ? 'MultiHeadAttention' : 'raw'} form: one joint block, 512 prefix tokens, RoPE, grid unknown`, async () => {
      const { blocks } = await match(fixture(`flux_joint${form}.onnx`));
      expect(blocks).toHaveLength(1);
      const b = blocks[0];
      expect(spec(b)).toEqual({ kind: 'joint', grid: undefined, heads: 2, channels: 64, headDim: 32, prefix: 512, patchable: true });
      expect(b.tokens).toBe(1024);
      expect(b.notes.join(' ')).toMatch(/token grid unknown.*hidden_states.*pass grid/);
      const { q, k, v } = b.boundaries;
      expect(q.projections.map((x) => x.node)).toEqual(['/add_q_proj/MatMul', '/to_q/MatMul']);
      expect(k.projections.map((x) => x.node)).toEqual(['/add_k_proj/MatMul', '/to_k/MatMul']);
      expect(v.projections.map((x) => x.node)).toEqual(['/add_v_proj/MatMul', '/to_v/MatMul']);
      expect(q.concat?.axis).toBe(2);
      expect(q.rope).toMatchObject({ cos: 'rope_cos', sin: 'rope_sin' });
      expect(k.rope).toMatchObject({ cos: 'rope_cos', sin: 'rope_sin' });
      expect(v.rope).toBeUndefined();
      expect(q.normNodes.length).toBeGreaterThan(0); // per-head RMSNorm
      // AdaLN-modulated norm outputs of the two streams
      expect(b.boundaries.normOutput).toBe(q.projections[1].input);
      expect(b.boundaries.contextNormOutput).toBe(q.projections[0].input);
      expect(b.boundaries.normOutput).not.toBe(b.boundaries.contextNormOutput);
      expect(b.boundaries.toOut?.node).toBe('/to_out/MatMul');
      expect(b.boundaries.toAddOut?.node).toBe('/to_add_out/MatMul');
      expect(b.boundaries.split?.textOutput).toBe(b.boundaries.toAddOut?.input);
      expect(b.boundaries.split?.imageOutput).toBe(b.boundaries.toOut?.input);
      expect(b.scale).toBeCloseTo(1 / Math.sqrt(32), 6);
    });
  }
});

describe('sd_transformer_64x64_static: sequence length baked into Reshape constants', () => {
  test('self blocks are patchable through the rewrites they list; applying them leaves the outputs unchanged', async () => {
    const file = fixture('sd_transformer_64x64_static.onnx');
    const m = await readModel(file);
    const { blocks } = matchAttention(m);
    const self = blocks.filter((b) => b.kind === 'self');
    expect(self).toHaveLength(2);
    for (const b of self) {
      expect(b.patchable).toBe(true);
      expect(b.notes.join(' ')).toMatch(/bake the sequence length 4096; patching rewrites them to -1 \/ 0/);
      expect(b.hazards.length).toBeGreaterThan(0);
      for (const h of b.hazards) {
        expect(h.kind).toBe('baked-sequence-length');
        expect(h.rewrite).toMatchObject({ from: 4096 });
        expect([-1, 0]).toContain(h.rewrite!.to);
      }
    }
    // apply the rewrites (shape constants are small, inline tensors)
    const g = new GraphIndex(m.proto.graph!, m);
    for (const h of self.flatMap((b) => b.hazards)) {
      const t = g.constTensor(h.rewrite!.input)!;
      const dv = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
      expect(Number(dv.getBigInt64(h.rewrite!.index * 8, true))).toBe(4096);
      dv.setBigInt64(h.rewrite!.index * 8, BigInt(h.rewrite!.to), true);
    }
    const again = matchAttention(m).blocks.filter((b) => b.kind === 'self');
    expect(again.map((b) => b.patchable)).toEqual([true, true]);
    const dir = tmpDir('static');
    const out = path.join(dir, 'rewritten.onnx');
    await writeModel(m, out);
    const [x, y] = [await runModel(file), await runModel(out)];
    expect(relErr(x.out_sample, y.out_sample)).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('PP-OCRv4 recognizer (Paddle2ONNX, a graph nobody here wrote)', () => {
  test('two self-attention blocks over a packed QKV projection; the classifier Softmax is skipped', async () => {
    const { blocks, skipped } = await match(PPOCR);
    expect(blocks).toHaveLength(2);
    for (const b of blocks) {
      expect(spec(b)).toEqual({ kind: 'self', grid: undefined, heads: 8, channels: 120, headDim: 15, prefix: undefined, patchable: true });
      expect(b.scale).toBeCloseTo(1 / Math.sqrt(15), 6);
      const [q, k, v] = [b.boundaries.q, b.boundaries.k, b.boundaries.v].map((s) => s.projections[0]);
      expect(q.node).toBe(k.node);
      expect(k.node).toBe(v.node);
      expect([q.packed, k.packed, v.packed]).toEqual([
        { index: 0, of: 3 },
        { index: 1, of: 3 },
        { index: 2, of: 3 },
      ]);
      expect(q.outFeatures).toBe(360);
      expect(b.boundaries.toOut?.outFeatures).toBe(120);
      expect(b.boundaries.normOp).toBe('Add'); // LayerNorm written out: ReduceMean, Sub, Pow, ..., Mul, Add
      // tokens come from an NCHW map of height 1 and dynamic width
      expect(b.gridSource?.tensor).toBe('swish_12.tmp_0');
      expect(b.gridSource?.dims[2]).toBe(1);
      expect(b.notes.join(' ')).toMatch(/not static.*known at run time from the input shapes/);
    }
    expect(blocks[0].boundaries.normOutput).not.toBe(blocks[1].boundaries.normOutput);
    expect(skipped).toHaveLength(1);
    expect(skipped[0].reason).toMatch(/constant weight: a classifier/);
  });
});
