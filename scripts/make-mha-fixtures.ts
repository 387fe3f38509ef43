// Builds the com.microsoft::MultiHeadAttention forms of the raw fixtures with toma's own codec and
// matcher: each attention core (scores MatMul, scale, Softmax, context MatMul, head merge) becomes
// one MultiHeadAttention node reading q, k, v in [B, S, C]. Where a stream is a bare projection
// (SD), MHA reads the projection output, as ORT's UNet fusion writes it; where RMSNorm / RoPE /
// the joint Concat run on heads (Flux), the [B, h, S, d] tensor is turned back into [B, S, C] with
// Transpose(0,2,1,3) + Reshape([0, 0, C]). Dead nodes are dropped. The two forms are checked
// against each other with onnxruntime-node before the file is kept.
//
//   npx tsx scripts/make-mha-fixtures.ts          (after /usr/bin/python3 scripts/make-fixtures.py)
import * as path from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  type GraphProto,
  type NodeProto,
} from '../lib/onnx/gen/onnx_pb';
import { matchAttention, type AttentionBlock, type Stream } from '../lib/onnx/matcher';
import { nodeName } from '../lib/onnx/graph';
import { readModel, writeModel, type OnnxModel } from '../lib/onnx/model';

const DIR = path.join(__dirname, '..', 'models', 'fixtures');
const FIXTURES = ['sd_transformer_32x32', 'sd_transformer_64x64', 'flux_joint'];

function intAttr(name: string, v: number) {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(v) });
}
function floatAttr(name: string, v: number) {
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: v });
}

/** The [B, S, C] tensor MHA should read for a stream, adding Transpose + Reshape nodes when needed. */
function bsdInput(g: GraphProto, s: Stream, channels: number, tag: string, added: NodeProto[]): string {
  const bare = !s.rope && !s.concat && s.normNodes.length === 0 && s.projections.length === 1;
  if (bare) return s.projections[0].output;
  if (s.scaleNodes.length) throw new Error(`${tag}: a scaled stream with RoPE/norm is not handled by this script`);
  const t = `${tag}/bsd_transpose`;
  const shape = `${tag}/bsd_shape`;
  const out = `${tag}/bsd`;
  added.push(
    create(NodeProtoSchema, {
      name: `${tag}/BsdTranspose`,
      opType: 'Transpose',
      input: [s.coreInput],
      output: [t],
      attribute: [create(AttributeProtoSchema, { name: 'perm', type: AttributeProto_AttributeType.INTS, ints: [0n, 2n, 1n, 3n] })],
    }),
  );
  g.initializer.push(
    create(TensorProtoSchema, { name: shape, dims: [3n], dataType: TensorProto_DataType.INT64, int64Data: [0n, 0n, BigInt(channels)] }),
  );
  added.push(create(NodeProtoSchema, { name: `${tag}/BsdReshape`, opType: 'Reshape', input: [t, shape], output: [out] }));
  return out;
}

export function toMultiHeadAttention(model: OnnxModel, blocks: AttentionBlock[]): number {
  const g = model.proto.graph!;
  const remove = new Set<string>();
  const insertAfter = new Map<string, NodeProto[]>();
  for (const b of blocks) {
    if (b.form !== 'matmul-softmax') continue;
    const tag = `${b.name}/mha`;
    const added: NodeProto[] = [];
    const q = bsdInput(g, b.boundaries.q, b.channels, `${tag}/q`, added);
    const k = bsdInput(g, b.boundaries.k, b.channels, `${tag}/k`, added);
    const v = bsdInput(g, b.boundaries.v, b.channels, `${tag}/v`, added);
    const attrs = [intAttr('num_heads', b.heads)];
    if (b.scale !== undefined) attrs.push(floatAttr('scale', b.scale));
    added.push(
      create(NodeProtoSchema, {
        name: `${b.name}/MultiHeadAttention`,
        opType: 'MultiHeadAttention',
        domain: 'com.microsoft',
        input: [q, k, v],
        output: [b.boundaries.headMerge.output],
        attribute: attrs,
      }),
    );
    for (const n of [...b.boundaries.core.nodes, ...b.boundaries.headMerge.nodes]) remove.add(n);
    // insert where the old head merge ended (all inputs exist before it)
    const last = b.boundaries.headMerge.nodes[b.boundaries.headMerge.nodes.length - 1] ?? b.boundaries.core.nodes[b.boundaries.core.nodes.length - 1];
    insertAfter.set(last, added);
  }
  const nodes: NodeProto[] = [];
  for (const n of g.node) {
    const nm = nodeName(n);
    if (!remove.has(nm)) nodes.push(n);
    const add = insertAfter.get(nm);
    if (add) nodes.push(...add);
  }
  g.node = deadCodeElimination(nodes, new Set(g.output.map((o) => o.name)));
  const used = new Set(g.node.flatMap((n) => n.input));
  g.initializer = g.initializer.filter((t) => used.has(t.name));
  if (!model.proto.opsetImport.some((o) => o.domain === 'com.microsoft')) {
    model.proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: 'com.microsoft', version: 1n }));
  }
  return insertAfter.size;
}

function deadCodeElimination(nodes: NodeProto[], outputs: Set<string>): NodeProto[] {
  const live = new Set(outputs);
  const keep: boolean[] = new Array(nodes.length).fill(false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    if (nodes[i].output.some((o) => live.has(o))) {
      keep[i] = true;
      for (const x of nodes[i].input) if (x) live.add(x);
    }
  }
  return nodes.filter((_, i) => keep[i]);
}

async function main(): Promise<void> {
  const ort = await import('onnxruntime-node');
  for (const name of FIXTURES) {
    const src = path.join(DIR, `${name}.onnx`);
    const model = await readModel(src);
    const { blocks } = matchAttention(model);
    const n = toMultiHeadAttention(model, blocks);
    const out = path.join(DIR, `${name}_mha.onnx`);
    await writeModel(model, out);
    // numerical check: both forms on the same random inputs
    const a = await ort.InferenceSession.create(src);
    const b = await ort.InferenceSession.create(out);
    const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
    let seed = 1;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
    for (const inp of a.inputNames) {
      const meta = (a.inputMetadata as unknown as Array<{ name: string; shape: Array<number | string> }>).find((m) => m.name === inp)!;
      const shape = meta.shape.map((d) => (typeof d === 'number' ? d : 1));
      const data = new Float32Array(shape.reduce((x, y) => x * y, 1)).map(rnd);
      feeds[inp] = new ort.Tensor('float32', data, shape);
    }
    const ra = await a.run(feeds);
    const rb = await b.run(feeds);
    let maxRel = 0;
    for (const o of a.outputNames) {
      const x = ra[o].data as Float32Array;
      const y = rb[o].data as Float32Array;
      let num = 0;
      let den = 0;
      for (let i = 0; i < x.length; i++) {
        num += (x[i] - y[i]) ** 2;
        den += x[i] ** 2;
      }
      maxRel = Math.max(maxRel, Math.sqrt(num / den));
    }
    await a.release();
    await b.release();
    if (!(maxRel < 1e-5)) throw new Error(`${name}: MHA form differs from the raw form (relative error ${maxRel})`);
    console.log(`${name}_mha.onnx: ${n} MultiHeadAttention nodes, relative difference ${maxRel.toExponential(2)}`);
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
