// `toma demo` and the model it ships (models/dit_mnist.onnx, models/mnist_classifier.onnx, made by
// models/train_dit.py and models/train_classifier.py; tests never retrain): the ONNX inputs and
// outputs are what the demo feeds and reads, the matcher finds every attention block of the DiT, and
// the demo runs end to end at a tiny setting and writes a valid PNG.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import * as ort from 'onnxruntime-node';
import { buildProgram } from '../lib/cli';
import { DEMO_CLASSIFIER, DEMO_MODEL, encodePng, gaussianNoise, runDemo } from '../lib/cli/demo';
import { inspect } from '../lib/onnx/inspect';
import { tmpDir } from './onnx/helpers';

// pngjs ships no type declarations; the one call used here, typed.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { PNG } = require('pngjs') as { PNG: { sync: { read(buf: Buffer): { width: number; height: number; data: Buffer } } } };

const dir = tmpDir('demo');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function sink() {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return { stream, text: () => text };
}

describe('the shipped demo model', () => {
  test('both files are in models/, small enough to ship', () => {
    for (const f of [DEMO_MODEL, DEMO_CLASSIFIER]) expect(fs.existsSync(f)).toBe(true);
    expect(fs.statSync(DEMO_MODEL).size).toBeLessThan(8e6);
    expect(fs.statSync(DEMO_CLASSIFIER).size).toBeLessThan(2e6);
  });

  test('the DiT takes x [B,1,32,32], t [B], y [B] int64 and returns v [B,1,32,32]', async () => {
    const s = await ort.InferenceSession.create(DEMO_MODEL);
    expect([...s.inputNames]).toEqual(['x', 't', 'y']);
    expect([...s.outputNames]).toEqual(['v']);
    const B = 3;
    const r = await s.run({
      x: new ort.Tensor('float32', gaussianNoise(B * 1024, 1), [B, 1, 32, 32]),
      t: new ort.Tensor('float32', Float32Array.from([1, 0.5, 0.05]), [B]),
      y: new ort.Tensor('int64', BigInt64Array.from([0n, 7n, 10n]), [B]),
    });
    expect(r.v.dims).toEqual([B, 1, 32, 32]);
    expect(r.v.type).toBe('float32');
    expect((r.v.data as Float32Array).every(Number.isFinite)).toBe(true);
    await s.release();
  });

  test('the classifier takes x [B,1,32,32] and returns logits [B,10] and features [B,F]', async () => {
    const s = await ort.InferenceSession.create(DEMO_CLASSIFIER);
    expect([...s.inputNames]).toEqual(['x']);
    expect([...s.outputNames]).toEqual(['logits', 'features']);
    const r = await s.run({ x: new ort.Tensor('float32', new Float32Array(2 * 1024).fill(0.5), [2, 1, 32, 32]) });
    expect(r.logits.dims).toEqual([2, 10]);
    expect(r.features.dims.length).toBe(2);
    expect(r.features.dims[0]).toBe(2);
    await s.release();
  });

  test('the matcher finds every attention block, patchable, on the 16x16 token grid', async () => {
    const r = await inspect(DEMO_MODEL);
    expect(r.blocks.length).toBeGreaterThanOrEqual(4);
    for (const b of r.blocks) {
      expect(b).toMatchObject({ kind: 'self', patchable: true, grid: [16, 16], form: 'matmul-softmax' });
      expect(b.heads * b.headDim).toBe(b.channels);
    }
    expect(r.skipped).toEqual([]);
  });
});

describe('toma demo', () => {
  test('is registered with its options', () => {
    const cmd = buildProgram().commands.find((c) => c.name() === 'demo');
    expect(cmd).toBeDefined();
    const longs = cmd!.options.map((o) => o.long);
    for (const o of ['--ratio', '--steps', '--seed', '--out', '--mode', '--backend']) expect(longs).toContain(o);
    expect(cmd!.helpInformation()).toMatch(/--ratio/);
  });

  test('runs end to end at a tiny setting and writes a valid PNG', async () => {
    const out = path.join(dir, 'sub', 'demo.png');
    const o = sink();
    const e = sink();
    const r = await runDemo({ ratio: 0.5, steps: 2, seed: 3, seeds: 2, classes: [1, 7], out, mode: 'standard-ops', cfg: 1, progress: true }, o.stream, e.stream);
    expect(r.images).toBe(4);
    expect(r.labels).toEqual([1, 1, 7, 7]);
    expect(r.patchedBlocks.length).toBeGreaterThan(0);
    for (const v of [r.dense.msPerImage, r.toma.msPerImage, r.speedup, r.cosine.mean]) expect(Number.isFinite(v)).toBe(true);
    expect(r.cosine.mean).toBeLessThanOrEqual(1 + 1e-6);
    const png = PNG.sync.read(fs.readFileSync(out));
    expect(png.width).toBeGreaterThan(3 * 2 * 32);
    expect(png.height).toBeGreaterThan(2 * 2 * 32);
    expect(o.text()).toMatch(/time per image/);
    expect(o.text()).toMatch(/classifier accuracy/);
    expect(o.text()).toMatch(/feature cosine/);
    expect(o.text()).toMatch(/PSNR/);
    expect(e.text()).toMatch(/model calls/);
  });

  test('segments mode runs too', async () => {
    const out = path.join(dir, 'seg.png');
    const r = await runDemo({ ratio: 0.5, steps: 1, seed: 0, seeds: 1, classes: [4], out, mode: 'segments', cfg: 1, progress: false }, sink().stream, sink().stream);
    expect(r.images).toBe(1);
    expect(fs.existsSync(out)).toBe(true);
  });

  test('encodePng writes what a PNG decoder reads back', () => {
    const w = 5;
    const h = 3;
    const rgb = new Uint8Array(w * h * 3).map((_, i) => (i * 37) & 255);
    const png = PNG.sync.read(encodePng(w, h, rgb));
    expect([png.width, png.height]).toEqual([w, h]);
    for (let i = 0; i < w * h; i++) expect([png.data[4 * i], png.data[4 * i + 1], png.data[4 * i + 2]]).toEqual([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]]);
  });
});
