// `toma demo`: toma's own small diffusion transformer (models/dit_mnist.onnx, a class-conditional DiT
// trained on MNIST by models/train_dit.py) sampled densely and with toma from the same noise. Writes a
// PNG (dense grid | toma grid | per-image difference map) and prints time per image, the speedup,
// classifier accuracy of each grid (models/mnist_classifier.onnx), same-seed feature cosine (the
// analogue of the paper's DINO score) and PSNR between the grids.
//
// Sampler (as Flux): rectified flow, x_t = (1 - t) x0 + t eps, the model predicts v = eps - x0;
// Euler from t = 1 to t = 0 on t_i = 1 - i / steps, x <- x + (t_{i+1} - t_i) v(x, t_i, y).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { deflateSync } from 'node:zlib';

import { inspect } from '../onnx/inspect';
import { loadOrt, type Ort } from '../onnx/segments/ort';
import { createSession, type CreateSessionOptions } from '../onnx/session';
import type { PatchMode, TomaSession } from '../onnx/session-types';

export const MODEL_DIR = resolve(__dirname, '..', '..', 'models');
export const DEMO_MODEL = resolve(MODEL_DIR, 'dit_mnist.onnx');
export const DEMO_CLASSIFIER = resolve(MODEL_DIR, 'mnist_classifier.onnx');
/** The null class of classifier-free guidance. */
export const NULL_CLASS = 10;
const IMG = 32;
const PIX = IMG * IMG;

export interface DemoOptions {
  /** Merge ratio in [0, 1). */
  ratio: number;
  /** Euler steps per image. */
  steps: number;
  /** Base seed of the noise. */
  seed: number;
  /** PNG path. */
  out: string;
  mode: PatchMode;
  backend?: 'cpu' | 'cuda';
  /** Images per class (columns of the grid, one seed each). */
  seeds: number;
  /** Digit classes to draw (default 0-9). */
  classes?: number[];
  /** Classifier-free guidance scale; 1 = plain conditional sampling. */
  cfg: number;
  model?: string;
  classifier?: string;
  /** Progress bar on stderr (default: when stderr is a terminal). */
  progress?: boolean;
  /**
   * Keep the last attention block dense (default true). On this 4-block model merging the block
   * right before the output costs the most fidelity (measured: see models/README.md).
   */
  denseLast?: boolean;
  /** More toma session options, passed to createSession over DEMO_SESSION_DEFAULTS. */
  session?: Partial<Omit<CreateSessionOptions, 'ratio' | 'mode' | 'backend'>>;
}

/** The demo's toma schedule: destinations re-selected every 2 steps, weights every step (20-step sampling). */
export const DEMO_SESSION_DEFAULTS = { destinationInterval: 2, weightInterval: 1 } as const;

export interface DemoResult {
  images: number;
  labels: number[];
  dense: { msPerImage: number; accuracy: number; predictions: number[] };
  toma: { msPerImage: number; accuracy: number; predictions: number[] };
  speedup: number;
  cosine: { mean: number; min: number };
  psnr: { mean: number; min: number };
  out: string;
  patchedBlocks: string[];
}

// ------------------------------------------------------------------------------------------------
// noise, sampling

/** Standard normal noise from a 32-bit seed (xorshift32 + Box-Muller): the same on every machine. */
export function gaussianNoise(n: number, seed: number): Float32Array {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  for (let i = 0; i < 8; i++) next();
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next()));
    const t = 2 * Math.PI * next();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/** The seed of image (column, class): independent of how images are batched. */
export function imageSeed(seed: number, column: number, cls: number): number {
  return (Math.imul(seed >>> 0, 1000003) + column * 131 + cls * 7 + 1) >>> 0;
}

type Runner = { run(feeds: Record<string, InstanceType<Ort['Tensor']>>): Promise<Record<string, InstanceType<Ort['Tensor']>>> };

/** Euler sampling of a batch: x [B, 1, 32, 32] noise in, sample out (in place). onStep after each model call. */
export async function eulerSample(
  ort: Ort,
  model: Runner,
  x: Float32Array,
  labels: number[],
  steps: number,
  cfg: number,
  onStep?: () => void,
): Promise<Float32Array> {
  const B = labels.length;
  const guided = cfg !== 1;
  const bb = guided ? 2 * B : B;
  const y = BigInt64Array.from((guided ? [...labels, ...labels.map(() => NULL_CLASS)] : labels).map(BigInt));
  const yT = new ort.Tensor('int64', y, [bb]);
  const xin = new Float32Array(bb * PIX);
  for (let i = 0; i < steps; i++) {
    const t = 1 - i / steps;
    const dt = (1 - (i + 1) / steps) - t;
    xin.set(x, 0);
    if (guided) xin.set(x, B * PIX);
    const out = await model.run({
      x: new ort.Tensor('float32', xin, [bb, 1, IMG, IMG]),
      t: new ort.Tensor('float32', new Float32Array(bb).fill(t), [bb]),
      y: yT,
    });
    const v = out.v.data as Float32Array;
    if (guided) {
      for (let j = 0; j < B * PIX; j++) x[j] += dt * (v[B * PIX + j] + cfg * (v[j] - v[B * PIX + j]));
    } else {
      for (let j = 0; j < B * PIX; j++) x[j] += dt * v[j];
    }
    onStep?.();
  }
  return x;
}

/** Model output in [-1, 1] -> pixels in [0, 1] (the classifier's input range). */
export function toPixels(x: Float32Array): Float32Array {
  const p = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) p[i] = Math.min(1, Math.max(0, (x[i] + 1) / 2));
  return p;
}

// ------------------------------------------------------------------------------------------------
// metrics

export function psnr(a: Float32Array, b: Float32Array): number {
  let mse = 0;
  for (let i = 0; i < a.length; i++) mse += (a[i] - b[i]) ** 2;
  mse /= a.length;
  return mse === 0 ? Infinity : 10 * Math.log10(1 / mse);
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb || 1e-30);
}

// ------------------------------------------------------------------------------------------------
// PNG (RGB, 8 bit), with node's zlib only

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    raw[y * (1 + width * 3)] = 0;
    raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (1 + width * 3) + 1);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * Three panels side by side: dense grid | toma grid | |dense - toma| (x4, "hot" colours). Rows are
 * classes, columns seeds; every pixel drawn `scale` times.
 */
export function demoImage(dense: Float32Array[], toma: Float32Array[], rows: number, cols: number, scale = 2): { width: number; height: number; rgb: Uint8Array } {
  const pad = 2;
  const gap = 12;
  const cell = IMG + pad;
  const panelW = cols * cell + pad;
  const panelH = rows * cell + pad;
  const W = (3 * panelW + 2 * gap) * scale;
  const H = panelH * scale;
  const rgb = new Uint8Array(W * H * 3).fill(40);
  const put = (px: number, py: number, r: number, g: number, b: number) => {
    for (let dy = 0; dy < scale; dy++)
      for (let dx = 0; dx < scale; dx++) {
        const o = ((py * scale + dy) * W + px * scale + dx) * 3;
        rgb[o] = r;
        rgb[o + 1] = g;
        rgb[o + 2] = b;
      }
  };
  const clamp = (v: number) => Math.max(0, Math.min(1, v));
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      for (let py = 0; py < IMG; py++)
        for (let px = 0; px < IMG; px++) {
          const a = dense[i][py * IMG + px];
          const b = toma[i][py * IMG + px];
          const x0 = pad + c * cell + px;
          const y0 = pad + r * cell + py;
          const ga = Math.round(255 * a);
          const gb = Math.round(255 * b);
          put(x0, y0, ga, ga, ga);
          put(panelW + gap + x0, y0, gb, gb, gb);
          const d = clamp(4 * Math.abs(a - b));
          put(2 * (panelW + gap) + x0, y0, Math.round(255 * clamp(3 * d)), Math.round(255 * clamp(3 * d - 1)), Math.round(255 * clamp(3 * d - 2)));
        }
    }
  return { width: W, height: H, rgb };
}

// ------------------------------------------------------------------------------------------------
// progress

class Progress {
  private done = 0;
  private last = 0;
  private readonly t0 = performance.now();
  constructor(
    private readonly total: number,
    private readonly enabled: boolean,
    private readonly err: NodeJS.WritableStream,
  ) {}
  tick(label: string): void {
    this.done++;
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < 80 && this.done < this.total) return;
    this.last = now;
    const w = 28;
    const f = Math.round((w * this.done) / this.total);
    const s = ((now - this.t0) / 1000).toFixed(1);
    this.err.write(`\r[${'#'.repeat(f)}${'.'.repeat(w - f)}] ${this.done}/${this.total} model calls  ${label.padEnd(5)} ${s}s `);
  }
  end(): void {
    if (this.enabled) this.err.write('\n');
  }
}

// ------------------------------------------------------------------------------------------------

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

export async function runDemo(o: DemoOptions, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<DemoResult> {
  if (!(o.ratio >= 0 && o.ratio < 1)) throw new RangeError(`ratio must be in [0, 1), got ${o.ratio}`);
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`steps must be an integer >= 1, got ${o.steps}`);
  if (!Number.isInteger(o.seeds) || o.seeds < 1) throw new RangeError(`seeds must be an integer >= 1, got ${o.seeds}`);
  if (!(o.cfg >= 0)) throw new RangeError(`cfg must be >= 0, got ${o.cfg}`);
  const classes = o.classes ?? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  if (!classes.length || classes.some((c) => !Number.isInteger(c) || c < 0 || c > 9)) throw new RangeError(`classes must be digits 0-9, got ${classes.join(',')}`);
  const modelPath = o.model ?? DEMO_MODEL;
  const clfPath = o.classifier ?? DEMO_CLASSIFIER;
  for (const p of [modelPath, clfPath]) if (!existsSync(p)) throw new Error(`${p} not found: the demo model ships with toma under models/`);
  const ort = loadOrt();

  const dense = await ort.InferenceSession.create(modelPath);
  const denseBlocks: string[] = [];
  if (o.denseLast ?? true) {
    const blocks = (await inspect(modelPath)).blocks.filter((b) => b.patchable);
    if (blocks.length > 1) denseBlocks.push(blocks[blocks.length - 1].name);
  }
  const toma: TomaSession = await createSession(modelPath, {
    ...DEMO_SESSION_DEFAULTS,
    ...(denseBlocks.length ? { dense: denseBlocks } : {}),
    ...o.session,
    ratio: o.ratio,
    mode: o.mode,
    ...(o.backend ? { backend: o.backend } : {}),
    onWarning: (m: string) => err.write(`toma: ${m}\n`),
  });
  const classifier = await ort.InferenceSession.create(clfPath);
  const patched = toma.stats().patchedBlocks;
  out.write(
    `toma demo: ${modelPath}\n` +
      `  ${classes.length} classes x ${o.seeds} seeds = ${classes.length * o.seeds} images, ${o.steps} Euler steps` +
      `${o.cfg !== 1 ? `, guidance ${o.cfg}` : ''}, ratio ${o.ratio}, mode ${o.mode}; merged blocks: ${patched.filter((b) => !denseBlocks.includes(b)).join(', ') || 'none'}` +
      `${denseBlocks.length ? `; dense: ${denseBlocks.join(', ')}` : ''}\n`,
  );

  const B = classes.length;
  const progress = new Progress(2 * o.seeds * o.steps + 2, o.progress ?? !!(err as NodeJS.WriteStream).isTTY, err);
  // warm-up: one call each (session initialisation is not sampling time)
  const warm = async (m: Runner, label: string) => {
    await eulerSample(ort, m, gaussianNoise(B * PIX, 12345), classes, 1, o.cfg);
    progress.tick(label);
  };
  await warm(dense, 'dense');
  toma.beginImage();
  await warm(toma, 'toma');

  const denseImgs: Float32Array[] = [];
  const tomaImgs: Float32Array[] = [];
  let denseMs = 0;
  let tomaMs = 0;
  for (let s = 0; s < o.seeds; s++) {
    const noise = new Float32Array(B * PIX);
    classes.forEach((c, i) => noise.set(gaussianNoise(PIX, imageSeed(o.seed, s, c)), i * PIX));
    // dense and toma alternate per column, so that machine load falls on both alike
    let t0 = performance.now();
    const xd = await eulerSample(ort, dense, noise.slice(), classes, o.steps, o.cfg, () => progress.tick('dense'));
    denseMs += performance.now() - t0;
    toma.beginImage();
    t0 = performance.now();
    const xt = await eulerSample(ort, toma, noise.slice(), classes, o.steps, o.cfg, () => progress.tick('toma'));
    tomaMs += performance.now() - t0;
    for (let i = 0; i < B; i++) {
      denseImgs.push(toPixels(xd.subarray(i * PIX, (i + 1) * PIX)));
      tomaImgs.push(toPixels(xt.subarray(i * PIX, (i + 1) * PIX)));
    }
  }
  progress.end();
  // images were produced column by column; order them class-major (row = class) for the grid
  const n = B * o.seeds;
  const order: number[] = [];
  for (let ci = 0; ci < B; ci++) for (let s = 0; s < o.seeds; s++) order.push(s * B + ci);
  const labels = order.map((k) => classes[k % B]);
  const dOrdered = order.map((k) => denseImgs[k]);
  const tOrdered = order.map((k) => tomaImgs[k]);

  const classify = async (imgs: Float32Array[]) => {
    const x = new Float32Array(imgs.length * PIX);
    imgs.forEach((im, i) => x.set(im, i * PIX));
    const r = await classifier.run({ x: new ort.Tensor('float32', x, [imgs.length, 1, IMG, IMG]) });
    const logits = r.logits.data as Float32Array;
    const feats = r.features.data as Float32Array;
    const F = feats.length / imgs.length;
    const pred: number[] = [];
    const fs: Float32Array[] = [];
    for (let i = 0; i < imgs.length; i++) {
      let best = 0;
      for (let k = 1; k < 10; k++) if (logits[i * 10 + k] > logits[i * 10 + best]) best = k;
      pred.push(best);
      fs.push(feats.slice(i * F, (i + 1) * F));
    }
    return { pred, fs };
  };
  const cd = await classify(dOrdered);
  const ct = await classify(tOrdered);
  const acc = (p: number[]) => p.filter((v, i) => v === labels[i]).length / n;
  const cos = cd.fs.map((f, i) => cosine(f, ct.fs[i]));
  const ps = dOrdered.map((d, i) => psnr(d, tOrdered[i]));
  const finite = ps.filter(Number.isFinite);
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);

  const img = demoImage(dOrdered, tOrdered, B, o.seeds);
  const outPath = resolve(o.out);
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, encodePng(img.width, img.height, img.rgb));

  const result: DemoResult = {
    images: n,
    labels,
    dense: { msPerImage: denseMs / n, accuracy: acc(cd.pred), predictions: cd.pred },
    toma: { msPerImage: tomaMs / n, accuracy: acc(ct.pred), predictions: ct.pred },
    speedup: denseMs / tomaMs,
    cosine: { mean: mean(cos), min: Math.min(...cos) },
    psnr: { mean: finite.length ? mean(finite) : Infinity, min: Math.min(...ps) },
    out: outPath,
    patchedBlocks: patched,
  };
  const rows: Array<[string, string, string]> = [
    ['', 'dense', `toma (ratio ${o.ratio}, ${o.mode})`],
    ['time per image', fmtMs(result.dense.msPerImage), `${fmtMs(result.toma.msPerImage)}  (${result.speedup.toFixed(2)}x)`],
    ['classifier accuracy', `${(100 * result.dense.accuracy).toFixed(1)}%`, `${(100 * result.toma.accuracy).toFixed(1)}%`],
    ['feature cosine', '', `${result.cosine.mean.toFixed(4)} mean, ${result.cosine.min.toFixed(4)} min (same seed, vs dense)`],
    ['PSNR', '', `${Number.isFinite(result.psnr.mean) ? result.psnr.mean.toFixed(2) : 'inf'} dB mean, ${Number.isFinite(result.psnr.min) ? result.psnr.min.toFixed(2) : 'inf'} dB min (vs dense)`],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  out.write('\n' + rows.map((r) => `  ${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2]}`.trimEnd()).join('\n') + '\n');
  out.write(`\nwrote ${outPath} (${img.width}x${img.height}: dense | toma | |dense - toma| x4; rows are digits, columns seeds)\n`);
  await toma.release();
  await dense.release();
  await classifier.release();
  return result;
}
