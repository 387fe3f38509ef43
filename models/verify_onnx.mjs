// Runs models/dit_mnist.onnx in onnxruntime-node on the inputs that train_dit.py export wrote, and
// compares with torch's output: node models/verify_onnx.mjs [model.onnx] [check.json] [tolerance]
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');
const here = new URL('.', import.meta.url).pathname;
const model = process.argv[2] ?? `${here}dit_mnist.onnx`;
const check = process.argv[3] ?? `${here}ckpt/dit_mnist_check.json`;
const tol = Number(process.argv[4] ?? 1e-4);
const ref = JSON.parse(readFileSync(check, 'utf8'));
const s = await ort.InferenceSession.create(model);
console.log('inputs', s.inputNames, 'outputs', s.outputNames);
const b = ref.batch;
const feeds = {
  x: new ort.Tensor('float32', Float32Array.from(ref.x), [b, 1, 32, 32]),
  t: new ort.Tensor('float32', Float32Array.from(ref.t), [b]),
  y: new ort.Tensor('int64', BigInt64Array.from(ref.y.map(BigInt)), [b]),
};
const out = (await s.run(feeds)).v;
let maxErr = 0;
let maxRef = 0;
for (let i = 0; i < out.data.length; i++) {
  maxErr = Math.max(maxErr, Math.abs(out.data[i] - ref.v[i]));
  maxRef = Math.max(maxRef, Math.abs(ref.v[i]));
}
console.log(`output ${out.dims.join('x')} max |onnx - torch| = ${maxErr.toExponential(2)} (max |v| ${maxRef.toFixed(3)}), tolerance ${tol}`);
// timing at batch 10
const x10 = new ort.Tensor('float32', new Float32Array(10 * 1024).map(() => Math.random() * 2 - 1), [10, 1, 32, 32]);
const f10 = { x: x10, t: new ort.Tensor('float32', new Float32Array(10).fill(0.5), [10]), y: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n]), [10]) };
await s.run(f10);
const times = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  await s.run(f10);
  times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
console.log(`batch 10: median ${times[2].toFixed(1)} ms per call (min ${times[0].toFixed(1)})`);
if (!(maxErr <= tol) || out.dims.join(',') !== `${b},1,32,32`) {
  console.error('MISMATCH');
  process.exit(1);
}
console.log('OK');
