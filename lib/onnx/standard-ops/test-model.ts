// A standalone ONNX model holding only the ToMA subgraph, built by the same emitter as the patch:
// for checking the ops against toma.computePlan / merge / unmerge on the same data, and for
// anyone who wants ToMA as an ONNX graph of its own.
//   inputs  x [B, P+N, C], y [B, P+K, C], and the plan control toma_recompute (2 select, 1 re-weigh
//           the destinations fed, 0 reuse the plan fed), toma_plan_dest, toma_plan_A (empty when
//           not used); none of them at ratio 0
//   outputs destinations [Bs, K] int64 (token indices), merged = merge(x) [B, P+K, C],
//           unmerged = unmerge(y) [B, P+N, C], toma_plan_dest_out, toma_plan_A_out
import { create, toBinary } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from '../gen/onnx_pb';
import { DT, GraphBuilder, Names, valueInfo } from './builder';
import { RECOMPUTE, TomaEmitter, tomaSpec, type TomaGraphOptions, type TomaSpec } from './toma-graph';

export interface TomaModelOptions extends TomaGraphOptions {
  channels: number;
  prefix?: number;
  opset?: number;
}

export interface TomaModel {
  bytes: Uint8Array;
  spec: TomaSpec;
  /** Merged image tokens per batch element. */
  K: number;
  ops: string[];
}

export function buildTomaModel(o: TomaModelOptions): TomaModel {
  const spec = tomaSpec(o);
  const L = spec.layout;
  const P = o.prefix ?? 0;
  const C = o.channels;
  const names = new Names(['x', 'y', 'destinations', 'merged', 'unmerged']);
  const b = new GraphBuilder(names, 'toma');
  const e = new TomaEmitter(b, spec);
  const inputs = [valueInfo('x', DT.FLOAT, ['B', P + L.N, C]), valueInfo('y', DT.FLOAT, ['B', P + L.K, C])];
  const outputs = [];

  const sliceTokens = (t: string, from: number, to: number) => b.op('Slice', [t, b.i64([from]), b.i64([to]), b.i64([1])]);
  const ximg = P ? sliceTokens('x', P, P + L.N) : 'x';
  const xr = e.regionGather(ximg);
  let A: string;
  let destTok: string;
  if (spec.identity) {
    A = e.identityA();
    destTok = b.i64(L.validSlots.map((s) => L.perm[Math.floor(s / L.T) * L.nmax + (s % L.T)]), [1, L.K], 'identity_dest');
    destTok = b.op('Identity', [destTok], {}, 'destinations');
  } else {
    const mode = 'toma_recompute';
    inputs.push(valueInfo(mode, DT.INT64, []), valueInfo('toma_plan_dest', DT.INT64, ['Bd', L.R, L.T]), valueInfo('toma_plan_A', DT.FLOAT, ['Ba', L.R, L.T, L.nmax]));
    const plan = e.controlledPlan(xr, DT.FLOAT, {
      isSelect: b.op('Equal', [mode, b.scalarI64(RECOMPUTE.select)]),
      isWeights: b.op('Equal', [mode, b.scalarI64(RECOMPUTE.weights)]),
      destIn: 'toma_plan_dest',
      AIn: 'toma_plan_A',
      destOut: 'toma_plan_dest_out',
      AOut: 'toma_plan_A_out',
    });
    A = plan.A;
    destTok = b.op('Identity', [e.destTokens(plan.dest)], {}, 'destinations');
    outputs.push(valueInfo('toma_plan_dest_out', DT.INT64), valueInfo('toma_plan_A_out', DT.FLOAT));
  }
  const { M, U } = e.matrices(A, DT.FLOAT);
  let merged = e.mergeRegions(xr, M);
  if (P) merged = b.op('Concat', [sliceTokens('x', 0, P), merged], { axis: 1 });
  b.op('Identity', [merged], {}, 'merged');
  const yimg = P ? sliceTokens('y', P, P + L.K) : 'y';
  let un = e.unmerge(yimg, U);
  if (P) un = b.op('Concat', [sliceTokens('y', 0, P), un], { axis: 1 });
  b.op('Identity', [un], {}, 'unmerged');
  void destTok;
  outputs.unshift(valueInfo('destinations', DT.INT64), valueInfo('merged', DT.FLOAT), valueInfo('unmerged', DT.FLOAT));

  const model = create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: 'toma',
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(o.opset ?? 17) })],
    graph: create(GraphProtoSchema, {
      name: 'toma',
      node: b.nodes,
      initializer: b.initializers,
      input: inputs,
      output: outputs,
    }),
  });
  return { bytes: toBinary(ModelProtoSchema, model), spec, K: L.K, ops: [...b.ops].sort() };
}
