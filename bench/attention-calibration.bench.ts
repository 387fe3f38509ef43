// The measurements behind lib/onnx/payoff.ts: onnxruntime's unfused attention core (Transpose,
// MatMul, scale, Softmax, MatMul: the form exporters write) against toma's attention and
// mergeAttentionUnmerge at ratio 0.5 (plan amortised one in 5), over head dims 8-128 and 256,
// 1024 and 4096 tokens, batch 1, about 160 channels, both with 2 threads, in one run.
//   npx tsx bench/attention-calibration.bench.ts [--no-json]
import { onnx } from 'onnx-proto';
import * as path from 'node:path';
import { collectHeader, formatHeader, writeResults } from './harness';
import * as ort from 'onnxruntime-node';
import * as toma from '../lib';
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const vi = (name: string, dims: (number|string)[]) => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } });
function coreModel(h: number, d: number): Uint8Array {
  const model: onnx.IModelProto = { irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph: {
    name: 'core',
    node: [
      { opType: 'Transpose', input: ['k'], output: ['kt'], attribute: [{ name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints: [0, 1, 3, 2] }] },
      { opType: 'MatMul', input: ['q', 'kt'], output: ['s'] },
      { opType: 'Mul', input: ['s', 'scale'], output: ['ss'] },
      { opType: 'Softmax', input: ['ss'], output: ['p'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }] },
      { opType: 'MatMul', input: ['p', 'v'], output: ['o'] },
    ],
    initializer: [{ name: 'scale', dataType: FLOAT, dims: [], floatData: [1 / Math.sqrt(d)] }],
    input: [vi('q', ['B', h, 'T', d]), vi('k', ['B', h, 'T', d]), vi('v', ['B', h, 'T', d])],
    output: [vi('o', ['B', h, 'T', d])],
  } };
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}
async function time(f: () => Promise<unknown>, minMs = 300) { await f(); let n = 0; const t = performance.now(); do { await f(); n++; } while (performance.now() - t < minMs); return (performance.now() - t) / n; }
(async () => {
  const header = collectHeader({ bench: 'attention-calibration' });
  process.stdout.write(`${formatHeader(header)}\n`);
  const B = 1;
  const rows: any[] = [];
  for (const d of [8, 16, 24, 40, 64, 128]) for (const T of [256, 1024, 4096]) {
    const h = Math.max(1, Math.round(320 / d / 2)); const C = h * d;
    if (T === 4096 && d * h > 320) continue;
    const s = await ort.InferenceSession.create(Buffer.from(coreModel(h, d)), { intraOpNumThreads: 2, interOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: '0' } } } });
    const n = B * h * T * d;
    const rnd = () => Float32Array.from({ length: n }, () => Math.random() - 0.5);
    const [q, k, v] = [rnd(), rnd(), rnd()];
    const f = { q: new ort.Tensor('float32', q, [B, h, T, d]), k: new ort.Tensor('float32', k, [B, h, T, d]), v: new ort.Tensor('float32', v, [B, h, T, d]) };
    const tOrt = await time(() => s.run(f));
    await s.release();
    const side = Math.sqrt(T);
    const t3 = (a: Float32Array) => ({ data: a, shape: [B, T, C], dtype: 'float32' as const });
    const x = t3(rnd());
    const plan = await toma.computePlan(x, { grid: [side, side], ratio: 0.5 });
    const tPlan = await time(() => toma.computePlan(x, { grid: [side, side], ratio: 0.5 }));
    const tMau = await time(() => toma.mergeAttentionUnmerge(t3(q), t3(k), t3(v), plan, { heads: h }));
    const tDense = await time(() => toma.attention(t3(q), t3(k), t3(v), { heads: h }));
    rows.push({ d, h, C, T, ortMs: tOrt, tomaDenseMs: tDense, mauMs: tMau, planMs: tPlan });
    console.log(`d=${d} h=${h} C=${C} T=${T}: ort ${tOrt.toFixed(2)} ms, toma dense ${tDense.toFixed(2)}, mau(0.5) ${tMau.toFixed(2)} + plan ${tPlan.toFixed(2)}/5 -> ratio ${(tOrt / (tMau + tPlan / 5)).toFixed(2)}`);
  }
  if (!process.argv.includes('--no-json')) {
    const file = writeResults('attention-calibration', { header, rows });
    process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
  }
})();
