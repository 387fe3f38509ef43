// Semantics-preserving rewrites that put exporter and optimiser variants of one computation into
// the form the matcher reads. onnxruntime's transpose optimiser pushes a head-split Transpose
// through the first product of a rotary embedding:
//     Add(Transpose_p(Mul(x', cos')), Mul(rot, sin))        with x = Transpose_p(x') in the graph
// which is Add(Mul(x, Transpose_p(cos')), Mul(rot, sin)), since a Transpose distributes over an
// elementwise product of operands of the same rank. Where the graph already holds x and
// Transpose_p(cos') (or cos' is itself a Transpose undone by p), the Add is rewired to a new Mul
// of those; the old Mul and Transpose are left for dead-code removal (or onnxruntime) to drop.
import { create } from '@bufbuild/protobuf';

import { NodeProtoSchema, type GraphProto, type NodeProto } from './gen/onnx_pb';
import { attrInts } from './graph';

const isStd = (n: NodeProto) => n.domain === '' || n.domain === 'ai.onnx';

/** Rewrites `graph` in place; returns how many Adds were rewired. Idempotent. */
export function canonicalizeRope(graph: GraphProto): number {
  const producer = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  const index = new Map<NodeProto, number>();
  graph.node.forEach((n, k) => {
    index.set(n, k);
    for (const o of n.output) if (o) producer.set(o, n);
    for (const i of n.input) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  });
  const isTranspose = (n: NodeProto | undefined, perm?: number[]): n is NodeProto =>
    !!n && isStd(n) && n.opType === 'Transpose' && (!perm || attrInts(n, 'perm')?.join(',') === perm.join(','));
  /** A tensor in the graph equal to Transpose_perm(t), if there is one. */
  const transposed = (t: string, perm: number[]): string | undefined => {
    const p = producer.get(t);
    if (isTranspose(p)) {
      const q = attrInts(p, 'perm');
      // Transpose_perm(Transpose_q(u)) = u when perm undoes q
      if (q && q.length === perm.length && perm.every((a, i) => q[a] === i)) return p.input[0];
    }
    for (const c of consumers.get(t) ?? []) if (isTranspose(c, perm)) return c.output[0];
    return undefined;
  };
  let rewired = 0;
  const added: Array<{ after: NodeProto; node: NodeProto }> = [];
  const dead = new Set<NodeProto>();
  const outputs = new Set(graph.output.map((o) => o.name));
  for (const add of graph.node) {
    if (!isStd(add) || add.opType !== 'Add' || add.input.length !== 2) continue;
    const ops = add.input.map((t) => producer.get(t));
    if (!ops.some((p) => p && isStd(p) && p.opType === 'Mul')) continue;
    for (let i = 0; i < 2; i++) {
      const tr = ops[i];
      if (!isTranspose(tr) || (consumers.get(tr.output[0]) ?? []).length !== 1 || outputs.has(tr.output[0])) continue;
      const mul = producer.get(tr.input[0]);
      if (!mul || !isStd(mul) || mul.opType !== 'Mul' || mul.input.length !== 2) continue;
      const perm = attrInts(tr, 'perm');
      if (!perm) continue;
      const a = transposed(mul.input[0], perm);
      const b = transposed(mul.input[1], perm);
      if (!a || !b) continue;
      // both must be computed before the Add (a Transpose found among the consumers may come later)
      const at = index.get(add)!;
      if ([a, b].some((t) => (index.get(producer.get(t)!) ?? -1) > at)) continue;
      const out = `${mul.output[0]}::toma_canonical`;
      const node = create(NodeProtoSchema, { name: `${mul.name || 'Mul'}::toma_canonical`, opType: 'Mul', input: [a, b], output: [out] });
      added.push({ after: add, node });
      add.input[i] = out;
      // the old product and Transpose read nothing else now: they go (no other reader, no graph output)
      dead.add(tr);
      if ((consumers.get(mul.output[0]) ?? []).length === 1 && !outputs.has(mul.output[0])) dead.add(mul);
      rewired++;
    }
  }
  // each new Mul goes right before its Add: its inputs (x, the table) are produced earlier than
  // the old Transpose, which the Add already followed
  for (const { after, node } of added) graph.node.splice(graph.node.indexOf(after), 0, node);
  if (dead.size) {
    const kept = graph.node.filter((n) => !dead.has(n));
    graph.node.splice(0, graph.node.length, ...kept);
  }
  return rewired;
}
