// Segment mode, graph side: where each block is cut (which tensors cross, in which layout, which
// nodes go), and how the graph is split into pieces (session.test.ts runs whole sessions).
import { GraphIndex, nodeName } from '../../lib/onnx/graph';
import { matchAttention } from '../../lib/onnx/matcher';
import { decodeModel, encodeModel, readModel, type OnnxModel } from '../../lib/onnx/model';
import { ShapeInfo } from '../../lib/onnx/shapes';
import { analyzeBlock, detectLayout, nodesByName, type BlockCut } from '../../lib/onnx/segments/analyze';
import * as ort from 'onnxruntime-node';
import { buildPieces, pieceGraph } from '../../lib/onnx/segments/pieces';
import { defaultDenseBlocks } from '../../lib/onnx/segments';
import { PPOCR, fixture, modelBytes, seededFeeds } from './helpers';
import { tinyAttentionModel } from './segments-helpers';

async function analyse(m: OnnxModel, preferPreRope = true) {
  const g = new GraphIndex(m.proto.graph!, m);
  const shapes = new ShapeInfo(g);
  const nodes = nodesByName(g);
  const blocks = matchAttention(m).blocks;
  return { g, shapes, nodes, blocks, results: blocks.map((b) => analyzeBlock(g, shapes, nodes, b, preferPreRope)) };
}

const cutsOf = (r: Awaited<ReturnType<typeof analyse>>) => r.results.filter((x) => x.ok).map((x) => (x as { cut: BlockCut }).cut);

describe('detectLayout', () => {
  test('reads [B,S,C], [B,h,S,d], [B,S,h,d] and [B*h,S,d]; refuses what it cannot tell', () => {
    expect(detectLayout(['b', 4096, 32], 2, 16, 32)).toBe('BSC');
    expect(detectLayout(['b', 2, 4096, 16], 2, 16, 32)).toBe('BNSH');
    expect(detectLayout(['b', 4096, 2, 16], 2, 16, 32)).toBe('BSHD');
    expect(detectLayout(['b*2', 4096, 16], 2, 16, 32)).toBe('BMM');
    expect(detectLayout(['b', 2, 2, 16], 2, 16, 32, 2)).toBe('BNSH');
    expect(detectLayout(['b', 2, 2, 16], 2, 16, 32)).toBeUndefined();
    expect(detectLayout(['b', 4096, 96], 2, 16, 32)).toBeUndefined();
    expect(detectLayout([1, 'b', 2, 4096, 16], 2, 16, 32)).toBeUndefined();
    expect(detectLayout(undefined, 2, 16, 32)).toBeUndefined();
  });
});

describe('where blocks are cut', () => {
  test('SD 4-D form: q/k/v are the projection outputs, x the norm output; the core goes, to_out stays', async () => {
    const r = await analyse(await readModel(fixture('sd_transformer_32x32.onnx')));
    expect(r.results.map((x) => x.ok)).toEqual([true, false, true, false]);
    expect((r.results[1] as { reason: string }).reason).toMatch(/cross-attention/);
    const [c0, c1] = cutsOf(r);
    expect(c0.q).toEqual({ tensor: '/transformer_blocks.0/attn1/to_q/MatMul_output_0', layout: 'BSC' });
    expect(c0.k.tensor).toBe('/transformer_blocks.0/attn1/to_k/MatMul_output_0');
    expect(c0.v.tensor).toBe('/transformer_blocks.0/attn1/to_v/MatMul_output_0');
    expect(c0.x).toEqual({ image: '/transformer_blocks.0/norm1/LayerNormalization_output_0' });
    expect(c0.output).toBe('/transformer_blocks.0/attn1/Reshape_3_output_0');
    expect(c0.scale).toBeCloseTo(0.25, 7);
    expect(c0.prefix).toBe(0);
    for (const n of ['/transformer_blocks.0/attn1/Softmax', '/transformer_blocks.0/attn1/Mul', '/transformer_blocks.0/attn1/Reshape', '/transformer_blocks.0/attn1/Reshape_3'])
      expect(c0.removed.has(n)).toBe(true);
    for (const n of ['/transformer_blocks.0/attn1/to_q/MatMul', '/transformer_blocks.0/attn1/to_out/MatMul', '/transformer_blocks.0/attn2/Softmax'])
      expect(c0.removed.has(n)).toBe(false);
    // block 1 scales q and k by a run-time sqrt chain: the Mul nodes go with the core
    expect(c1.scale).toBeCloseTo(0.25, 6);
    expect([...c1.removed].filter((n) => /attn1\/Mul/.test(n)).length).toBeGreaterThanOrEqual(2);
  });

  test('SD 3-D BMM form and the static export: cut before the head split, so baked sequence lengths go with the core', async () => {
    for (const f of ['sd_transformer_64x64.onnx', 'sd_transformer_64x64_static.onnx']) {
      const r = await analyse(await readModel(fixture(f)));
      const cuts = cutsOf(r);
      expect(cuts).toHaveLength(2);
      for (const c of cuts) for (const s of [c.q, c.k, c.v]) expect(s.layout).toBe('BSC');
      if (f.includes('static')) {
        const hazards = r.blocks.filter((b) => b.kind === 'self').flatMap((b) => b.hazards);
        expect(hazards.length).toBeGreaterThan(0);
        expect(r.blocks.filter((b) => b.kind === 'self').every((b) => b.patchable)).toBe(true); // standard-ops rewrites them
        for (const h of hazards) expect(cuts.some((c) => c.removed.has(h.node!))).toBe(true);
      }
    }
  });

  test('MultiHeadAttention form: the fused node is the core', async () => {
    const r = await analyse(await readModel(fixture('sd_transformer_64x64_mha.onnx')));
    const cuts = cutsOf(r);
    expect(cuts).toHaveLength(2);
    expect([...cuts[0].removed]).toEqual(['/transformer_blocks.0/attn1/MultiHeadAttention']);
    expect(cuts[0].q.layout).toBe('BSC');
  });

  test('PP-OCRv4 (packed QKV): q, k, v are the per-stream [B, h, S, d] slices', async () => {
    const r = await analyse(await readModel(PPOCR));
    const cuts = cutsOf(r);
    expect(cuts).toHaveLength(2);
    for (const c of cuts) {
      expect([c.q.layout, c.k.layout, c.v.layout]).toEqual(['BNSH', 'BNSH', 'BNSH']);
      expect(new Set([c.q.tensor, c.k.tensor, c.v.tensor]).size).toBe(3);
      expect(c.block.grid).toBeUndefined();
    }
  });

  test('Flux joint block: cut before RoPE, with rot(q), rot(k), cos/sin, and [context ; image] selection tokens', async () => {
    const r = await analyse(await readModel(fixture('flux_joint.onnx')));
    const [c] = cutsOf(r);
    expect(c.prefix).toBe(512);
    expect(c.rope).toBeDefined();
    expect(c.rope!.q).toEqual({ tensor: '/Concat_6_output_0', layout: 'BNSH' });
    expect(c.rope!.k).toEqual({ tensor: '/Concat_7_output_0', layout: 'BNSH' });
    expect(c.rope!.qRot.layout).toBe('BNSH');
    expect(c.rope!.qRot.tensor).not.toBe(c.rope!.q.tensor);
    expect([c.rope!.cos, c.rope!.sin]).toEqual(['rope_cos', 'rope_sin']);
    expect(c.rope!.table).toBe('head'); // [S, d] tables: the same for every head
    expect(c.v).toEqual({ tensor: '/Concat_8_output_0', layout: 'BNSH' });
    expect(c.x).toEqual({ image: '/Add_3_output_0', context: '/Add_5_output_0' });
    expect(c.ropeAfterCut).toBeUndefined();
    // the rotation's own Mul/Add go; the nodes computing rot(q) stay
    const add = r.g.producer(r.blocks[0].boundaries.q.rope!.output)!;
    expect(c.removed.has(nodeName(add))).toBe(true);
    expect(c.removed.has(nodeName(r.g.producer(c.rope!.qRot.tensor)!))).toBe(false);

    const post = cutsOf(await analyse(await readModel(fixture('flux_joint.onnx')), false))[0];
    expect(post.rope).toBeUndefined();
    expect(post.ropeAfterCut).toMatch(/disabled/);
    expect(post.q.tensor).toBe(r.blocks[0].boundaries.q.rope!.output);
  });

  test('refuses a block whose internal tensor is read outside the core (here: the probabilities are a graph output)', async () => {
    const ok = await analyse(decodeModel(modelBytes(tinyAttentionModel())));
    expect(ok.results[0].ok).toBe(true);
    const bad = await analyse(decodeModel(modelBytes(tinyAttentionModel({ probsOut: true }))));
    expect(bad.results[0]).toEqual({ ok: false, reason: expect.stringMatching(/graph output/) });
  });
});

describe('pieces', () => {
  test('SD stack: one cut per patched block, n + 1 pieces, every tensor has a source', async () => {
    const m = await readModel(fixture('sd_transformer_32x32.onnx'));
    const r = await analyse(m);
    const { pieces, cuts } = buildPieces(r.g, cutsOf(r));
    expect(pieces).toHaveLength(3);
    expect(cuts.map((c) => c.stage)).toEqual([0, 1]);
    expect(cuts[0].needs).toEqual([cuts[0].q, cuts[0].k, cuts[0].v, cuts[0].x]);
    const names = (i: number) => new Set(pieces[i].nodes.map(nodeName));
    const all = pieces.flatMap((p) => p.nodes.map(nodeName));
    expect(new Set(all).size).toBe(all.length); // no node twice
    expect(all).not.toContain('/transformer_blocks.0/attn1/Softmax');
    expect(all).not.toContain('/transformer_blocks.1/attn1/Softmax');
    expect(names(1).has('/transformer_blocks.0/attn2/Softmax')).toBe(true); // cross-attention stays inside
    expect(names(2).has('/transformer_blocks.1/attn2/Softmax')).toBe(true);
    // input-only work (attn2 k/v projections of the text) runs in the piece that reads it
    expect(names(2).has('/transformer_blocks.1/attn2/to_k/MatMul')).toBe(true);
    expect(names(0).has('/transformer_blocks.1/attn2/to_k/MatMul')).toBe(false);
    // sources: graph inputs, earlier pieces, or toma's attention outputs of earlier cuts
    const produced = new Map<string, number>();
    pieces.forEach((p) => p.nodes.forEach((n) => n.output.forEach((o) => produced.set(o, p.index))));
    pieces.forEach((p) => {
      for (const t of p.crossInputs) {
        const cut = cuts.find((c) => c.output === t);
        if (cut) expect(cut.stage).toBeLessThan(p.index);
        else expect(produced.get(t)).toBeLessThan(p.index);
      }
      for (const t of p.outputs) expect(produced.get(t)).toBe(p.index);
      const used = new Set(p.nodes.flatMap((n) => n.input));
      for (const init of p.initializers) expect(used.has(init.name)).toBe(true);
    });
    expect(pieces[0].graphInputs.map((v) => v.name)).toEqual(['sample']); // the text is read where attn2 needs it
    expect(pieces[1].graphInputs.map((v) => v.name)).toEqual(['encoder_hidden_states']);
    expect(pieces[1].crossInputs).toContain(cuts[0].output);
    expect(pieces[2].outputs).toEqual(['out_sample']);
    for (const c of cuts) for (const t of c.needs) expect(produced.get(t)).toBeLessThanOrEqual(c.stage);
  });

  test('conversions: [B*h,S,d] / [B,h,S,d] cuts get Reshape/Transpose nodes; RoPE cuts pack [q|rot q|k|rot k|v] and expand cos/sin', async () => {
    const ocr = await analyse(await readModel(PPOCR));
    const p = buildPieces(ocr.g, cutsOf(ocr));
    const added = p.pieces.flatMap((x) => x.nodes).filter((n) => n.name.startsWith('toma/'));
    expect(added.filter((n) => n.opType === 'Transpose')).toHaveLength(6); // q, k, v of two blocks
    expect(p.cuts[0].q).toMatch(/^toma::cut0::q$/);

    const flux = await analyse(await readModel(fixture('flux_joint.onnx')));
    const f = buildPieces(flux.g, cutsOf(flux));
    expect(f.pieces).toHaveLength(2);
    const c = f.cuts[0];
    expect(c.rope).toEqual({ packed: 'toma::cut0::qkv_rope', cos: 'toma::cut0::cos', sin: 'toma::cut0::sin' });
    expect(c.needs).toEqual([c.rope!.packed, c.rope!.cos, c.rope!.sin, c.x]);
    const ops = f.pieces[0].nodes.filter((n) => n.name.startsWith('toma/')).map((n) => n.opType);
    expect(ops.filter((o) => o === 'Expand')).toHaveLength(2);
    expect(ops).toContain('Concat');
    expect(f.pieces[1].crossInputs).toContain(c.output);
  });
});

describe('RoPE tables crossing the cut', () => {
  test("'head' tables ([B, T, d]) equal every head's slice of the 'channels' tables ([B, T, C]), and both equal cos[t]", async () => {
    const m = await readModel(fixture('flux_joint.onnx'));
    const r = await analyse(m);
    const cut = cutsOf(r)[0];
    const tables: Record<string, Float32Array> = {};
    let dims: Record<string, readonly number[]> = {};
    const s0 = await ort.InferenceSession.create(fixture('flux_joint.onnx'));
    const feeds = seededFeeds(s0, 3, 1);
    await s0.release();
    for (const table of ['head', 'channels'] as const) {
      const { pieces, cuts } = buildPieces(r.g, [{ ...cut, rope: { ...cut.rope!, table } }]);
      const types = new Map(m.proto.graph!.input.map((v) => [v.name, v]));
      const graph = pieceGraph(m.proto.graph!, pieces[0], types);
      const s = await ort.InferenceSession.create(encodeModel({ ...m, proto: { ...m.proto, graph } }));
      const out = await s.run(Object.fromEntries(pieces[0].graphInputs.map((v) => [v.name, feeds[v.name]])));
      tables[table] = out[cuts[0].rope!.cos].data as Float32Array;
      dims = { ...dims, [table]: out[cuts[0].rope!.cos].dims };
      await s.release();
    }
    expect(dims.head).toEqual([1, 1536, 32]);
    expect(dims.channels).toEqual([1, 1536, 64]);
    const cos = feeds.rope_cos.data as Float32Array;
    for (let t = 0; t < 1536; t += 97)
      for (let c = 0; c < 64; c++) {
        expect(tables.channels[t * 64 + c]).toBe(cos[t * 32 + (c % 32)]);
        expect(tables.head[t * 32 + (c % 32)]).toBe(cos[t * 32 + (c % 32)]);
      }
  });
});

describe('defaultDenseBlocks (SPEC 7)', () => {
  const group = (_b: string, i: { grid: [number, number]; channels: number }) => `${i.grid}:${i.channels}`;
  test('first group of a kind with several groups stays dense; one group, or another kind, does not', () => {
    const blocks = [
      { name: 'a', kind: 'self', grid: [64, 64] as [number, number], channels: 640 },
      { name: 'b', kind: 'self', grid: [32, 32] as [number, number], channels: 1280 },
      { name: 'c', kind: 'self', grid: [64, 64] as [number, number], channels: 640 },
      { name: 'j', kind: 'joint', grid: [64, 64] as [number, number], channels: 3072 },
    ];
    const d = defaultDenseBlocks(blocks, group);
    expect([...d.keys()]).toEqual(['a', 'c']);
    expect(d.get('a')).toMatch(/first of 2 self-attention block groups/);
    expect(defaultDenseBlocks(blocks.slice(0, 1), group).size).toBe(0);
  });
});
