// Helpers for the segment-mode tests: a small hand-built self-attention model, and independent
// compositions of "the original graph with toma's attention injected" built straight from the
// matcher's boundaries (no segment-mode code involved).
import { create } from '@bufbuild/protobuf';
import * as ort from 'onnxruntime-node';
import * as toma from '../../lib';
import { AttributeProto_AttributeType, AttributeProtoSchema, TensorProto_DataType, TensorProtoSchema, ValueInfoProtoSchema } from '../../lib/onnx/gen/onnx_pb';
import { encodeModel, readModel } from '../../lib/onnx/model';
import { matchAttention, type AttentionBlock } from '../../lib/onnx/matcher';
import type { Tensor } from '../../lib/types';
import { floatTensor, ints, model, node, vi } from './helpers';

const intAttr = (name: string, i: number) => create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(i) });
const scalar = (name: string, v: number) =>
  create(TensorProtoSchema, { name, dims: [], dataType: TensorProto_DataType.FLOAT, rawData: new Uint8Array(new Float32Array([v]).buffer) });
const i64 = (name: string, v: number[]) => create(TensorProtoSchema, { name, dims: [BigInt(v.length)], dataType: TensorProto_DataType.INT64, int64Data: v.map(BigInt) });

/**
 * x [batch, 16, 8] tokens -> LayerNorm -> to_q/k/v -> 2 heads x 4 (4-D form) -> softmax attention
 * -> to_out + residual. `probsOut` also exposes the attention probabilities as a graph output
 * (an internal tensor read outside the core: segment mode must refuse to cut that block).
 */
export function tinyAttentionModel(o: { probsOut?: boolean } = {}) {
  const nodes = [
    node('LayerNormalization', ['x', 'ln_w', 'ln_b'], ['n'], [intAttr('axis', -1)], { name: '/blk/norm1/LayerNormalization' }),
    node('MatMul', ['n', 'wq'], ['q'], [], { name: '/blk/attn1/to_q/MatMul' }),
    node('MatMul', ['n', 'wk'], ['k'], [], { name: '/blk/attn1/to_k/MatMul' }),
    node('MatMul', ['n', 'wv'], ['v'], [], { name: '/blk/attn1/to_v/MatMul' }),
    node('Reshape', ['q', 'split'], ['q4'], [], { name: '/blk/attn1/Reshape' }),
    node('Transpose', ['q4'], ['qh'], [ints('perm', [0, 2, 1, 3])], { name: '/blk/attn1/Transpose' }),
    node('Reshape', ['k', 'split'], ['k4'], [], { name: '/blk/attn1/Reshape_1' }),
    node('Transpose', ['k4'], ['kT'], [ints('perm', [0, 2, 3, 1])], { name: '/blk/attn1/Transpose_1' }),
    node('Reshape', ['v', 'split'], ['v4'], [], { name: '/blk/attn1/Reshape_2' }),
    node('Transpose', ['v4'], ['vh'], [ints('perm', [0, 2, 1, 3])], { name: '/blk/attn1/Transpose_2' }),
    node('MatMul', ['qh', 'kT'], ['s'], [], { name: '/blk/attn1/MatMul' }),
    node('Mul', ['s', 'scale'], ['ss'], [], { name: '/blk/attn1/Mul' }),
    node('Softmax', ['ss'], ['p'], [intAttr('axis', -1)], { name: '/blk/attn1/Softmax' }),
    node('MatMul', ['p', 'vh'], ['o'], [], { name: '/blk/attn1/MatMul_1' }),
    node('Transpose', ['o'], ['o2'], [ints('perm', [0, 2, 1, 3])], { name: '/blk/attn1/Transpose_3' }),
    node('Reshape', ['o2', 'merge'], ['o3'], [], { name: '/blk/attn1/Reshape_3' }),
    node('MatMul', ['o3', 'wo'], ['o4'], [], { name: '/blk/attn1/to_out/MatMul' }),
    node('Add', ['o4', 'bo'], ['o5'], [], { name: '/blk/attn1/to_out/Add' }),
    node('Add', ['o5', 'x'], ['y'], [], { name: '/blk/Add' }),
  ];
  const inits = [
    floatTensor('ln_w', [8], 11),
    floatTensor('ln_b', [8], 12),
    floatTensor('wq', [8, 8], 1),
    floatTensor('wk', [8, 8], 2),
    floatTensor('wv', [8, 8], 3),
    floatTensor('wo', [8, 8], 4),
    floatTensor('bo', [8], 5),
    i64('split', [0, 0, 2, 4]),
    i64('merge', [0, 0, 8]),
    scalar('scale', 0.5),
  ];
  const outputs = [vi('y', ['batch', 16, 8])];
  if (o.probsOut) outputs.push(vi('p', ['batch', 2, 16, 16]));
  return model(nodes, inits, [vi('x', ['batch', 16, 8])], outputs);
}

export function f32(t: ort.Tensor): Float32Array {
  return t.data as Float32Array;
}

const T = (data: Float32Array, shape: number[]): Tensor => ({ data, shape, dtype: 'float32' });

/** [B, h, S, d] -> [B, S, h*d]; [B, S, C] as it is. */
export function bnshToBsc(t: ort.Tensor): Tensor {
  if (t.dims.length === 3) return T(Float32Array.from(f32(t)), [...t.dims]);
  const [B, h, S, d] = t.dims as number[];
  const src = f32(t);
  const out = new Float32Array(src.length);
  for (let b = 0; b < B; b++)
    for (let hh = 0; hh < h; hh++)
      for (let s = 0; s < S; s++)
        for (let i = 0; i < d; i++) out[((b * S + s) * h + hh) * d + i] = src[((b * h + hh) * S + s) * d + i];
  return T(out, [B, S, h * d]);
}

function concatTokens(a: Tensor, b: Tensor): Tensor {
  const [B, Sa, C] = a.shape;
  const Sb = b.shape[1];
  const out = new Float32Array(B * (Sa + Sb) * C);
  for (let bb = 0; bb < B; bb++) {
    out.set((a.data as Float32Array).subarray(bb * Sa * C, (bb + 1) * Sa * C), bb * (Sa + Sb) * C);
    out.set((b.data as Float32Array).subarray(bb * Sb * C, (bb + 1) * Sb * C), (bb * (Sa + Sb) + Sa) * C);
  }
  return T(out, [B, Sa + Sb, C]);
}

/**
 * The original model with the attention outputs of `blocks` replaced by graph inputs inj_i and the
 * tensors each block's attention reads added as graph outputs. Returns a session of it.
 */
async function injectable(file: string, pick: (b: AttentionBlock) => boolean, captures: (b: AttentionBlock) => string[]) {
  const m = await readModel(file);
  const blocks = matchAttention(m).blocks.filter(pick);
  const g = m.proto.graph!;
  const outs = new Set(g.output.map((o) => o.name));
  blocks.forEach((b, i) => {
    const o = b.boundaries.headMerge.output;
    for (const n of g.node) n.input.forEach((x, j) => x === o && (n.input[j] = `inj_${i}`));
    g.input.push(vi(`inj_${i}`, ['inj_b', 'inj_t', b.channels]));
    for (const t of captures(b)) if (!outs.has(t)) {
      outs.add(t);
      g.output.push(create(ValueInfoProtoSchema, { name: t }));
    }
  });
  const session = await ort.InferenceSession.create(encodeModel(m));
  return { session, blocks };
}

/**
 * toma by hand on an SD-style model: each listed self-attention block's q/k/v (the projection
 * outputs) and norm output are captured from the original graph; the first block of the group
 * computes the plan on its norm output, the others reuse it; mergeAttentionUnmerge gives each
 * attention output, fed back until the last run gives the model's outputs.
 */
export async function composeSelfByHand(file: string, feeds: Record<string, ort.Tensor>, o: { ratio: number; grid?: [number, number] }) {
  const { session, blocks } = await injectable(
    file,
    (b) => b.kind === 'self',
    (b) => [b.boundaries.q.projections[0].output, b.boundaries.k.projections[0].output, b.boundaries.v.projections[0].output, b.boundaries.normOutput],
  );
  const inj: Record<string, ort.Tensor> = {};
  const B = feeds[session.inputNames[0]].dims[0];
  blocks.forEach((b, i) => {
    const N = b.tokens as number;
    inj[`inj_${i}`] = new ort.Tensor('float32', new Float32Array(B * N * b.channels), [B, N, b.channels]);
  });
  let plan: toma.Plan | undefined;
  for (let i = 0; i <= blocks.length; i++) {
    const out = await session.run({ ...feeds, ...inj });
    if (i === blocks.length) {
      await session.release();
      return out;
    }
    const b = blocks[i];
    const get = (n: string) => T(Float32Array.from(f32(out[n])), [...out[n].dims]);
    const x = get(b.boundaries.normOutput);
    plan ??= await toma.computePlan(x, { grid: (b.grid ?? o.grid)!, ratio: o.ratio });
    const r = await toma.mergeAttentionUnmerge(
      get(b.boundaries.q.projections[0].output),
      get(b.boundaries.k.projections[0].output),
      get(b.boundaries.v.projections[0].output),
      plan,
      { heads: b.heads, scale: b.scale },
    );
    inj[`inj_${i}`] = new ort.Tensor('float32', r.data as Float32Array, r.shape);
  }
  throw new Error('unreachable');
}

/** Flux-style RoPE (pairs (x0, x1) -> x0 cos - x1 sin, x1 cos + x0 sin) of row `pos` of [S, d] tables. */
function ropeRows(t: Tensor, heads: number, cos: Float32Array, sin: Float32Array, d: number, pos: (b: number, r: number) => number): Tensor {
  const [B, R, C] = t.shape;
  const src = t.data as Float32Array;
  const out = new Float32Array(src.length);
  for (let b = 0; b < B; b++)
    for (let r = 0; r < R; r++) {
      const p = pos(b, r);
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < d; i += 2) {
          const at = (b * R + r) * C + h * d + i;
          const x0 = src[at];
          const x1 = src[at + 1];
          out[at] = x0 * cos[p * d + i] - x1 * sin[p * d + i];
          out[at + 1] = x1 * cos[p * d + i + 1] + x0 * sin[p * d + i + 1];
        }
    }
  return T(out, [B, R, C]);
}

/**
 * toma by hand on the Flux joint fixture, the authors' way: merge the pre-RoPE q/k and v, rotate
 * each merged token with its destination's position (text rows keep theirs), attend, unmerge.
 * With `rotated`, merges the already-rotated q/k instead (the deviation).
 */
export async function composeJointByHand(file: string, feeds: Record<string, ort.Tensor>, o: { ratio: number; grid: [number, number]; rotated?: boolean }) {
  const { session, blocks } = await injectable(
    file,
    (b) => b.kind === 'joint',
    (b) => [b.boundaries.q.rope!.input, b.boundaries.k.rope!.input, b.boundaries.q.rope!.output, b.boundaries.k.rope!.output, b.boundaries.v.coreInput, b.boundaries.normOutput, b.boundaries.contextNormOutput!],
  );
  const b = blocks[0];
  const [B, P] = feeds.encoder_hidden_states.dims as number[];
  const N = o.grid[0] * o.grid[1];
  const inj = { inj_0: new ort.Tensor('float32', new Float32Array(B * (P + N) * b.channels), [B, P + N, b.channels]) };
  const out = await session.run({ ...feeds, ...inj });
  const bd = b.boundaries;
  const x = concatTokens(T(f32(out[bd.contextNormOutput!]), [...out[bd.contextNormOutput!].dims]), T(f32(out[bd.normOutput]), [...out[bd.normOutput].dims]));
  const plan = await toma.computePlan(x, { grid: o.grid, ratio: o.ratio, prefix: P });
  let attn: Tensor;
  if (o.rotated) {
    attn = await toma.mergeAttentionUnmerge(bnshToBsc(out[bd.q.rope!.output]), bnshToBsc(out[bd.k.rope!.output]), bnshToBsc(out[bd.v.coreInput]), plan, {
      heads: b.heads,
      scale: b.scale,
    });
  } else {
    const cos = f32(feeds.rope_cos);
    const sin = f32(feeds.rope_sin);
    const K = plan.K;
    const dst = plan.destinations;
    const pos = (bb: number, r: number) => (r < P ? r : P + dst[(dst.length === K ? 0 : bb * K) + r - P]);
    const q = ropeRows(await toma.merge(bnshToBsc(out[bd.q.rope!.input]), plan), b.heads, cos, sin, b.headDim, pos);
    const k = ropeRows(await toma.merge(bnshToBsc(out[bd.k.rope!.input]), plan), b.heads, cos, sin, b.headDim, pos);
    const v = await toma.merge(bnshToBsc(out[bd.v.coreInput]), plan);
    attn = await toma.unmerge(await toma.attention(q, k, v, { heads: b.heads, scale: b.scale }), plan);
  }
  const final = await session.run({ ...feeds, inj_0: new ort.Tensor('float32', attn.data as Float32Array, attn.shape) });
  await session.release();
  return final;
}
