// The patcher against the corpus of real diffusers exports (models/corpus): models toma did not
// make, checked against ground truth read from the torch module tree (which attention is self,
// cross or joint, on which grid) and against onnxruntime running the original model.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { create } from '@bufbuild/protobuf';
import * as ort from 'onnxruntime-node';
import * as toma from '../../lib';
import { TensorShapeProto_DimensionSchema, TensorShapeProtoSchema, TypeProto_TensorSchema, TypeProtoSchema, ValueInfoProtoSchema } from '../../lib/onnx/gen/onnx_pb';
import { matchAttention } from '../../lib/onnx/matcher';
import { encodeModel, readModel } from '../../lib/onnx/model';
import type { Tensor } from '../../lib/types';
import { bnshToBsc } from './segments-helpers';
import type { SegmentSessionStats } from '../../lib/onnx/segments';
import type { StandardOpsSession } from '../../lib/onnx/standard-ops';
import { corpus, feeds, modelPath, outputs, relDiff, type CorpusModel, type Reference, type TruthBlock } from './corpus';

const MODELS = corpus();
const quiet = { onWarning: () => undefined };

/** The reference inputs a model is checked on: its small one ('ref'). */
const refOf = (m: CorpusModel): Reference => m.references.find((r) => r.name === 'ref') ?? m.references[0];

/** Ground truth blocks toma should merge: self and joint attention (Flux's single blocks are joint). */
const mergeable = (m: CorpusModel) => m.attention.filter((a) => a.kind !== 'cross');

/** Our block for a ground-truth attention: by scope where the exporter kept names, else by order. */
function pair<T extends { name: string; kind: string }>(m: CorpusModel, ours: T[]): Array<[TruthBlock, T | undefined]> {
  const truth = m.attention;
  const named = ours.filter((b) => b.name.startsWith('/'));
  if (named.length === ours.length) return truth.map((t) => [t, ours.find((b) => b.name === t.onnx_scope)]);
  // fused nodes (Attention_0, MultiHeadAttention_3) carry no scope: kinds in graph order
  const byKind = (k: string) => ours.filter((b) => (k === 'cross' ? b.kind === 'cross' : b.kind !== 'cross'));
  const queues = { cross: byKind('cross'), other: byKind('self') };
  return truth.map((t) => [t, (t.kind === 'cross' ? queues.cross : queues.other).shift()]);
}

const originals = new Map<string, Record<string, ort.Tensor>>();
async function original(m: CorpusModel): Promise<Record<string, ort.Tensor>> {
  const hit = originals.get(m.key);
  if (hit) return hit;
  const s = await ort.InferenceSession.create(modelPath(m));
  const out = await s.run(feeds(refOf(m)));
  await s.release();
  originals.set(m.key, out);
  return out;
}

describe.each(MODELS.map((m) => [m.key, m] as const))('%s', (_key, m) => {
  const ref = refOf(m);
  const out0 = ref.outputs[0].name;

  test('onnxruntime runs it as torch did (the corpus itself)', async () => {
    const o = await original(m);
    expect(relDiff(o[out0], outputs(ref)[out0])).toBeLessThanOrEqual(m.tolerance);
  });

  test('inspect with the input shapes: every self/joint attention found and patchable, cross never, grids as torch saw them', async () => {
    const inputShapes = Object.fromEntries(ref.inputs.map((t) => [t.name, t.shape]));
    const r = await toma.onnx.inspect(modelPath(m), { inputShapes });
    expect(r.blocks.filter((b) => b.kind === 'cross')).toHaveLength(m.counts.cross);
    expect(r.blocks.filter((b) => b.kind === 'cross' && b.patchable)).toHaveLength(0);
    const ours = r.blocks.filter((b) => b.kind !== 'cross');
    expect(ours).toHaveLength(mergeable(m).length);
    for (const [t, b] of pair(m, r.blocks)) {
      expect(b).toBeDefined();
      expect(b!.kind).toBe(t.kind);
      expect(b!.heads).toBe(t.heads);
      if (t.kind === 'cross') continue;
      expect([b!.name, b!.patchable, b!.reason]).toEqual([b!.name, true, undefined]);
      // token inputs (Flux) tell their grid only with the position ids' values (at run time)
      if (b!.grid) expect(b!.grid).toEqual(t.grid.ref);
    }
  });

  test.each(['segments', 'standard-ops'] as const)('%s: ratio 0 is the original; ratio 0.5 merges every self/joint block on the grid torch saw', async (mode) => {
    const base = await original(m);
    const f = feeds(ref);
    const dense = await toma.onnx.createSession(modelPath(m), { ratio: 0, mode, ...quiet });
    expect(relDiff((await dense.run(f))[out0], base[out0])).toBeLessThanOrEqual(1e-5);
    await dense.release();

    const s = await toma.onnx.createSession(modelPath(m), { ratio: 0.5, mode, dense: [], ...quiet });
    s.beginImage();
    const merged = await s.run(f);
    const d = relDiff(merged[out0], base[out0]);
    expect(d).toBeGreaterThan(1e-4); // something was merged
    expect(d).toBeLessThan(0.5); // and the model still computes about the same thing
    const reported =
      mode === 'segments'
        ? (s.stats() as SegmentSessionStats).blocks.map((b) => ({ name: b.name, kind: b.kind, grid: b.grid, patched: b.status === 'patched' }))
        : (s as unknown as StandardOpsSession).report.blocks.map((b) => ({ name: b.name, kind: b.kind, grid: b.grid, patched: b.patched }));
    expect(s.stats().patchedBlocks).toHaveLength(mergeable(m).length);
    for (const [t, b] of pair(m, reported)) {
      expect(b).toBeDefined();
      expect(b!.patched).toBe(t.kind !== 'cross');
      if (t.kind !== 'cross') expect(b!.grid).toEqual(t.grid.ref);
    }
    await s.release();
  });
});

describe('the two modes are two implementations of one method', () => {
  // Standard-ops merges the block input (the authors' way); segment mode merges q/k/v after the
  // projections (SPEC 6). Merging commutes with the linear projections, so the two agree wherever
  // nothing nonlinear sits between: everywhere but the per-head q/k RMSNorm of SD3.5 and Flux.
  const linear = MODELS.filter((m) => !m.attention.some((a) => a.qk_norm));
  test.each(linear.map((m) => [m.key, m] as const))('%s: segments and standard-ops give the same outputs over 3 steps', async (_k, m) => {
    const f = feeds(refOf(m));
    const runs: Array<Record<string, ort.Tensor>[]> = [];
    for (const mode of ['segments', 'standard-ops'] as const) {
      const s = await toma.onnx.createSession(modelPath(m), { ratio: 0.5, mode, dense: [], ...quiet });
      s.beginImage();
      const o: Record<string, ort.Tensor>[] = [];
      for (let i = 0; i < 3; i++) o.push(await s.run(f));
      runs.push(o);
      await s.release();
    }
    const name = refOf(m).outputs[0].name;
    const tol = m.dtype.startsWith('float16') ? 5e-3 : 1e-5;
    for (let i = 0; i < 3; i++) expect(relDiff(runs[0][i][name], runs[1][i][name])).toBeLessThanOrEqual(tol);
  });
});

describe('the same model in other forms merges the same way', () => {
  // onnxruntime-optimised, fused-MultiHeadAttention and external-data files derive from one export:
  // toma must merge them exactly as it merges the raw export.
  const derived = MODELS.filter((m) => m.derived_from && m.dtype === 'float32');
  test.each(derived.map((m) => [m.key, m] as const))('%s', async (_k, m) => {
    const base = MODELS.find((x) => x.file === m.derived_from)!;
    const f = feeds(refOf(m));
    const name = refOf(m).outputs[0].name;
    for (const mode of ['segments', 'standard-ops'] as const) {
      const outs: ort.Tensor[] = [];
      for (const x of [base, m]) {
        const s = await toma.onnx.createSession(modelPath(x), { ratio: 0.5, mode, dense: [], ...quiet });
        outs.push((await s.run(f))[name]);
        await s.release();
      }
      expect(relDiff(outs[1], outs[0])).toBeLessThanOrEqual(1e-5);
    }
  });
});

describe('Flux: merged tokens are rotated at their destination (by hand on the original graph)', () => {
  // The block's attention output is replaced by a graph input; the pre-rotation q/k, v, the
  // selection tokens and the cos/sin tables are read from the original graph; toma's ops merge,
  // a hand-written Flux rotation (pairs (x0, x1) -> (x0 c - x1 s, x1 c + x0 s)) rotates each merged
  // token with its destination's row (text rows keep theirs), attention, unmerge, and the result
  // goes back in. Segment mode with only that block merged must give the same model output.
  const m = MODELS.find((x) => x.key === 'flux_sdpa_dynamic')!;
  test.each(['/transformer_blocks.0/attn', '/single_transformer_blocks.1/attn'])('%s', async (name) => {
    const ref = refOf(m);
    const f = feeds(ref);
    const text = ref.inputs.find((t) => t.name === 'txt_ids')!.shape[0];
    const grid = m.attention.find((a) => a.onnx_scope === name)!.grid.ref!;
    const session = await toma.onnx.createSession(modelPath(m), { ratio: 0.5, dense: (b: string) => b !== name, ...quiet });
    session.beginImage();
    const want = await session.run(f);
    expect(session.stats().patchedBlocks).toEqual([name]);
    await session.release();

    const model = await readModel(modelPath(m));
    const b = matchAttention(model, new Map(ref.inputs.map((t) => [t.name, t.shape]))).blocks.find((x) => x.name === name)!;
    const bd = b.boundaries;
    const g = model.proto.graph!;
    const out = bd.headMerge.output;
    for (const n of g.node) n.input.forEach((x, j) => x === out && (n.input[j] = 'injected'));
    g.input.push(create(ValueInfoProtoSchema, { name: 'injected', type: floatType(3) }));
    const capture = [bd.q.rope!.input, bd.k.rope!.input, bd.v.coreInput, bd.q.rope!.cos, bd.q.rope!.sin, bd.normOutput, ...(bd.contextNormOutput ? [bd.contextNormOutput] : [])];
    for (const t of capture) g.output.push(create(ValueInfoProtoSchema, { name: t }));
    const s = await ort.InferenceSession.create(encodeModel(model));
    const B = ref.inputs[0].shape[0];
    const T = text + grid[0] * grid[1];
    const zero = new ort.Tensor('float32', new Float32Array(B * T * b.channels), [B, T, b.channels]);
    const cap = await s.run({ ...f, injected: zero });
    const bsc = (t: string) => bnshToBsc(cap[t]);
    const x = bd.contextNormOutput ? catTokens(bsc(bd.contextNormOutput), bsc(bd.normOutput)) : bsc(bd.normOutput);
    const plan = await toma.computePlan(x, { grid, ratio: 0.5, prefix: text });
    const K = plan.K;
    const dst = plan.destinations;
    const pos = (bb: number, r: number) => (r < text ? r : text + dst[(dst.length === K ? 0 : bb * K) + r - text]);
    const cos = cap[bd.q.rope!.cos].data as Float32Array;
    const sin = cap[bd.q.rope!.sin].data as Float32Array;
    const q = rotateFlux(await toma.merge(bsc(bd.q.rope!.input), plan), b.heads, cos, sin, b.headDim, pos);
    const k = rotateFlux(await toma.merge(bsc(bd.k.rope!.input), plan), b.heads, cos, sin, b.headDim, pos);
    const v = await toma.merge(bsc(bd.v.coreInput), plan);
    const attn = await toma.unmerge(await toma.attention(q, k, v, { heads: b.heads, scale: b.scale }), plan);
    const got = await s.run({ ...f, injected: new ort.Tensor('float32', attn.data as Float32Array, attn.shape) });
    await s.release();
    const o = ref.outputs[0].name;
    expect(relDiff(got[o], want[o])).toBeLessThanOrEqual(1e-5);
  });
});

function floatType(rank: number) {
  return create(TypeProtoSchema, {
    value: { case: 'tensorType', value: create(TypeProto_TensorSchema, { elemType: 1, shape: create(TensorShapeProtoSchema, { dim: Array.from({ length: rank }, (_, i) => create(TensorShapeProto_DimensionSchema, { value: { case: 'dimParam', value: `d${i}` } })) }) }) },
  });
}

function catTokens(a: Tensor, b: Tensor): Tensor {
  const [B, Sa, C] = a.shape;
  const Sb = b.shape[1];
  const out = new Float32Array(B * (Sa + Sb) * C);
  for (let i = 0; i < B; i++) {
    out.set((a.data as Float32Array).subarray(i * Sa * C, (i + 1) * Sa * C), i * (Sa + Sb) * C);
    out.set((b.data as Float32Array).subarray(i * Sb * C, (i + 1) * Sb * C), (i * (Sa + Sb) + Sa) * C);
  }
  return { data: out, shape: [B, Sa + Sb, C], dtype: 'float32' };
}

/** Flux's rotation of [B, R, C] rows (heads of d channels), row r at table row pos(b, r) of [.., S, d] tables. */
function rotateFlux(t: Tensor, heads: number, cos: Float32Array, sin: Float32Array, d: number, pos: (b: number, r: number) => number): Tensor {
  const [B, R, C] = t.shape;
  const src = t.data as Float32Array;
  const out = new Float32Array(src.length);
  for (let b = 0; b < B; b++)
    for (let r = 0; r < R; r++) {
      const p = pos(b, r) * d;
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < d; i += 2) {
          const at = (b * R + r) * C + h * d + i;
          out[at] = src[at] * cos[p + i] - src[at + 1] * sin[p + i];
          out[at + 1] = src[at + 1] * cos[p + i + 1] + src[at] * sin[p + i + 1];
        }
    }
  return { data: out, shape: [B, R, C], dtype: 'float32' };
}

describe('patchModel on a dynamic-shape export', () => {
  test('inputShapes fixes the grids: the written model runs at that latent like the standard-ops session', async () => {
    const m = MODELS.find((x) => x.key === 'sd15_sdpa_dynamic')!;
    const ref = refOf(m);
    const inputShapes = Object.fromEntries(ref.inputs.map((t) => [t.name, t.shape]));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'toma-corpus-'));
    try {
      const out = path.join(dir, 'patched.onnx');
      const without = await toma.onnx.patchModel(modelPath(m), out, { ratio: 0.5, dense: [], planIO: 'none' });
      expect(without.blocks.filter((b) => b.patched)).toHaveLength(0); // no grid without the shapes
      const report = await toma.onnx.patchModel(modelPath(m), out, { ratio: 0.5, dense: [], planIO: 'none', inputShapes });
      expect(report.blocks.filter((b) => b.patched)).toHaveLength(16);
      const s = await ort.InferenceSession.create(out);
      const got = await s.run(feeds(ref));
      await s.release();
      const session = await toma.onnx.createSession(modelPath(m), { ratio: 0.5, dense: [], mode: 'standard-ops', ...quiet });
      const want = await session.run(feeds(ref));
      await session.release();
      const o = ref.outputs[0].name;
      expect(relDiff(got[o], want[o])).toBeLessThanOrEqual(1e-6);
      await expect(toma.onnx.patchModel(modelPath(m), out, { ratio: 0.5, inputShapes: { latent: [1, 4, 8, 8] } })).rejects.toThrow(/options\.inputShapes\.latent: the model has no input 'latent'/);
      await expect(toma.onnx.patchModel(modelPath(m), out, { ratio: 0.5, inputShapes: { sample: [1, -4] } })).rejects.toThrow(TypeError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the default: mode 'auto' and the payoff estimate", () => {
  test('a model too small to gain (DiT, 256 tokens) runs as exported; a UNet merges its large blocks only', async () => {
    const dit = MODELS.find((x) => x.key === 'dit_sdpa_dynamic')!;
    const s = await toma.onnx.createSession(modelPath(dit), { ratio: 0.5, ...quiet });
    const out = await s.run(feeds(refOf(dit)));
    expect(s.stats().patchedBlocks).toEqual([]);
    expect(relDiff(out[refOf(dit).outputs[0].name], (await original(dit))[refOf(dit).outputs[0].name])).toBe(0);
    await s.release();

    const unet = MODELS.find((x) => x.key === 'sd15_sdpa_dynamic')!;
    const ref = unet.references.find((r) => r.name === 'latent64')!;
    const u = await toma.onnx.createSession(modelPath(unet), { ratio: 0.5, ...quiet });
    expect(u.stats().patchedBlocks).toEqual([]); // grids wait for the input shapes
    await u.run(feeds(ref));
    const st = u.stats() as ReturnType<typeof u.stats> & { auto?: { mode: string; savedMs: Record<string, number> } };
    expect(['segments', 'standard-ops']).toContain(st.auto?.mode);
    expect(st.mode).toBe(st.auto?.mode);
    expect(st.auto!.savedMs[st.auto!.mode]).toBeGreaterThanOrEqual(Math.max(...Object.values(st.auto!.savedMs)));
    // 64x64 and 32x32 blocks merge; the 16x16 and 8x8 ones (256 and 64 tokens of 2 heads) do not
    const merged = new Set(st.patchedBlocks);
    for (const a of unet.attention.filter((x) => x.kind === 'self')) {
      const tokens = a.image_tokens.latent64;
      expect([a.onnx_scope, merged.has(a.onnx_scope)]).toEqual([a.onnx_scope, tokens >= 1024]);
    }
    await u.release();
  });
});
