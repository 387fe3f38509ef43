// Saves the graph onnxruntime itself runs after its optimisations, as users ship them:
//   node scripts/corpus/ort-optimize.mjs IN.onnx OUT.onnx (basic|extended|layout|all)
// Prints one JSON line on success.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');
const version = require('onnxruntime-node/package.json').version;

const [src, dst, level] = process.argv.slice(2);
if (!src || !dst || !['basic', 'extended', 'layout', 'all'].includes(level)) {
  console.error('usage: ort-optimize.mjs IN.onnx OUT.onnx (basic|extended|layout|all)');
  process.exit(2);
}
const session = await ort.InferenceSession.create(src, {
  executionProviders: ['cpu'],
  graphOptimizationLevel: level,
  optimizedModelFilePath: dst,
});
await session.release?.();
console.log(JSON.stringify({ onnxruntime_node: version, level, src, dst }));
