// Checks every corpus file in onnxruntime-node (CPU EP): it loads, and on each stored reference set
// (torch's inputs and outputs) it reproduces torch's output within the manifest's tolerance
// (relative L2). Dynamic models are checked at every stored size, the 64x64 latent included.
// Writes models/corpus/check.json; exits 1 if anything fails.
//   node scripts/corpus/verify.mjs [name ...]        (from the repository root)
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');
const ortVersion = require('onnxruntime-node/package.json').version;

const corpus = path.resolve('models/corpus');
const manifest = JSON.parse(fs.readFileSync(path.join(corpus, 'manifest.json'), 'utf8'));

function readTensor(d) {
  const buf = fs.readFileSync(path.join(corpus, d.file));
  const bytes = new Uint8Array(buf.byteLength);
  bytes.set(buf);
  const n = d.shape.reduce((a, b) => a * b, 1);
  const make = {
    float32: () => new Float32Array(bytes.buffer, 0, n),
    int64: () => new BigInt64Array(bytes.buffer, 0, n),
    int32: () => new Int32Array(bytes.buffer, 0, n),
    float16: () => new Uint16Array(bytes.buffer, 0, n),
  }[d.dtype];
  if (!make) throw new Error(`${d.file}: dtype ${d.dtype} not handled`);
  const data = make();
  if (bytes.byteLength !== data.byteLength) throw new Error(`${d.file}: ${bytes.byteLength} bytes, expected ${data.byteLength}`);
  return new ort.Tensor(d.dtype, data, d.shape);
}

function compare(got, want) {
  let num = 0, den = 0, maxAbs = 0, finite = true;
  for (let i = 0; i < want.length; i++) {
    const g = Number(got[i]), w = Number(want[i]);
    if (!Number.isFinite(g)) finite = false;
    const d = g - w;
    num += d * d;
    den += w * w;
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  return { relL2: Math.sqrt(num / den), maxAbs, finite };
}

const only = process.argv.slice(2);
const results = {};
const log = [];
const say = (line) => {
  log.push(line);
  console.log(line);
};
let failed = 0;
for (const [name, entry] of Object.entries(manifest.files)) {
  if (only.length && !only.includes(name)) continue;
  const r = { file: entry.file, loads: false, sets: {}, ok: false };
  results[name] = r;
  let session;
  try {
    session = await ort.InferenceSession.create(path.join(corpus, entry.file), { executionProviders: ['cpu'] });
    r.loads = true;
  } catch (e) {
    r.error = String(e.message || e).split('\n')[0];
    failed++;
    say(`${name.padEnd(34)} LOAD FAILED: ${r.error}`);
    continue;
  }
  let ok = true;
  for (const set of entry.references) {
    const feeds = {};
    for (const d of set.inputs) feeds[d.name] = readTensor(d);
    const t0 = performance.now();
    let out;
    try {
      out = await session.run(feeds);
    } catch (e) {
      r.sets[set.name] = { ok: false, error: String(e.message || e).split('\n')[0] };
      ok = false;
      continue;
    }
    const ms = performance.now() - t0;
    for (const d of set.outputs) {
      const want = readTensor(d);
      const got = out[d.name];
      const shapeOk = got && JSON.stringify(got.dims) === JSON.stringify(d.shape);
      const c = shapeOk ? compare(got.data, want.data) : { relL2: Infinity, maxAbs: Infinity, finite: false };
      const pass = shapeOk && c.finite && c.relL2 <= entry.tolerance;
      r.sets[set.name] = { ok: pass, shape: d.shape, relL2: c.relL2, maxAbs: c.maxAbs, ms: Math.round(ms) };
      if (!pass) ok = false;
    }
  }
  r.ok = ok;
  if (!ok) failed++;
  const sets = Object.entries(r.sets)
    .map(([k, v]) => (v.error ? `${k}: ERROR ${v.error}` : `${k} [${v.shape}] relL2 ${v.relL2.toExponential(2)} ${v.ok ? 'ok' : 'FAIL'}`))
    .join('; ');
  say(`${name.padEnd(34)} ${ok ? 'PASS' : 'FAIL'}  ${sets}`);
  await session.release?.();
}

const outFile = path.join(corpus, 'check.json');
const previous = fs.existsSync(outFile) ? JSON.parse(fs.readFileSync(outFile, 'utf8')) : { results: {} };
const merged = only.length ? { ...previous.results, ...results } : results;
say(failed ? `${failed} file(s) failed` : `all ${Object.keys(results).length} file(s) pass`);
const doc = {
  about: 'written by scripts/corpus/verify.mjs: onnxruntime-node CPU EP vs the torch reference outputs',
  onnxruntime_node: ortVersion,
  node: process.version,
  date: new Date().toISOString().slice(0, 10),
  log: only.length ? [...(previous.log || []), ...log] : log,
  results: merged,
};
fs.writeFileSync(outFile + '.part', JSON.stringify(doc, null, 1) + '\n');
fs.renameSync(outFile + '.part', outFile);
process.exit(failed ? 1 : 0);
