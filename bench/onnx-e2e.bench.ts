// End-to-end benchmark of toma's onnxruntime-node integration (issue: segment mode): the 64x64
// SD-style fixture (models/fixtures/sd_transformer_64x64.onnx: 2 transformer blocks, self-attention
// over 4096 tokens, cross-attention to 77 text tokens, batch 2) run as a 20-step denoising loop with
// the reuse schedule, as exported vs. segment mode vs. standard-ops mode at ratio 0.5, in one run,
// plus segment mode with every block at ratio 0 (toma's dense attention between the same pieces:
// what the fused attention kernel alone buys), under onnxruntime thread configurations that differ
// in spin-waiting (segment mode's own default is nospin unless ortOptions.extra sets a spin key):
//   spin      onnxruntime's default, stated (intra-op threads spin-wait after each run)
//   nospin    extra: session.intra_op.allow_spinning = '0'
//   stopspin  extra: session.force_spinning_stop = '1'
// The loop: sample <- sample + 0.1 * (model(sample) - sample), 20 times from the same seeded start,
// beginImage() first; per-step time = loop time / 20. Quality: relative difference from the
// original's loop of the last step's output and of the final sample.
//
//   npx tsx bench/onnx-e2e.bench.ts [--reps N] [--warmup N] [--steps N] [--ratio R] [--ort-threads N]
//                                   [--configs spin,nospin,stopspin] [--no-json]
import * as ort from 'onnxruntime-node';
import * as path from 'node:path';

import { createSession, type TomaSession } from '../lib/onnx';
import type { SegmentSessionStats } from '../lib/onnx/segments';
import {
  collectHeader,
  formatContention,
  formatHeader,
  formatTable,
  measureInterleaved,
  relativeError,
  Rng,
  watchContention,
  writeResults,
  type Entry,
  type Stats,
} from './harness';

const FIXTURE = path.join(__dirname, '..', 'models', 'fixtures', 'sd_transformer_64x64.onnx');

interface Options {
  reps: number;
  warmup: number;
  steps: number;
  ratio: number;
  ortThreads: number;
  configs: string[];
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { reps: 4, warmup: 1, steps: 20, ratio: 0.5, ortThreads: 2, configs: ['spin', 'nospin', 'stopspin'], json: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new RangeError(`${a} needs a value`);
      return v;
    };
    if (a === '--reps') o.reps = Number(next());
    else if (a === '--warmup') o.warmup = Number(next());
    else if (a === '--steps') o.steps = Number(next());
    else if (a === '--ratio') o.ratio = Number(next());
    else if (a === '--ort-threads') o.ortThreads = Number(next());
    else if (a === '--configs') o.configs = next().split(',');
    else if (a === '--no-json') o.json = false;
    else throw new RangeError(`unknown argument ${a}`);
  }
  return o;
}

const EXTRA: Record<string, Record<string, string>> = {
  spin: { 'session.intra_op.allow_spinning': '1' },
  nospin: { 'session.intra_op.allow_spinning': '0' },
  stopspin: { 'session.force_spinning_stop': '1' },
};

interface Runner {
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  beginImage(): void;
  release(): Promise<void>;
  stats?: () => unknown;
}

function wrapOrt(s: ort.InferenceSession): Runner {
  return { run: (f) => s.run(f), beginImage: () => undefined, release: () => s.release() };
}

function wrapToma(s: TomaSession): Runner {
  return { run: (f) => s.run(f), beginImage: () => s.beginImage(), release: () => s.release(), stats: () => s.stats() };
}

/** One image: beginImage, then `steps` model calls with the sample fed back. */
async function loop(r: Runner, start: Float32Array, ctx: ort.Tensor, steps: number, shape: number[]) {
  r.beginImage();
  let sample = Float32Array.from(start);
  let last: Float32Array = sample;
  for (let i = 0; i < steps; i++) {
    const out = await r.run({ sample: new ort.Tensor('float32', sample, shape), encoder_hidden_states: ctx });
    last = out.out_sample.data as Float32Array;
    const next = new Float32Array(sample.length);
    for (let j = 0; j < next.length; j++) next[j] = sample[j] + 0.1 * (last[j] - sample[j]);
    sample = next;
  }
  return { last, sample };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const header = collectHeader({ bench: 'onnx-e2e', fixture: path.relative(path.join(__dirname, '..'), FIXTURE), steps: o.steps, ratio: o.ratio, ortIntraOpThreads: o.ortThreads });
  process.stdout.write(`${formatHeader(header)}\n`);
  process.stdout.write(`fixture     ${header.fixture}: batch 2, 4096 tokens (64x64), C=32, 2 self + 2 cross-attention blocks; ${o.steps}-step loop, ratio ${o.ratio}\n\n`);

  const B = 2;
  const shape = [B, 32, 64, 64];
  const rng = new Rng(2025);
  const start = rng.gaussianArray(shape.reduce((a, b) => a * b, 1));
  const ctx = new ort.Tensor('float32', rng.gaussianArray(B * 77 * 96), [B, 77, 96]);

  const rows: Array<Record<string, unknown>> = [];
  const results: Record<string, unknown>[] = [];
  const watch = watchContention();
  for (const config of o.configs) {
    const ortOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: o.ortThreads, interOpNumThreads: 1, extra: EXTRA[config] };
    if (!EXTRA[config]) throw new RangeError(`unknown config ${config}`);
    const runners: Array<{ label: string; r?: Runner; error?: string }> = [];
    runners.push({ label: 'original', r: wrapOrt(await ort.InferenceSession.create(FIXTURE, ortOptions)) });
    runners.push({ label: 'segments', r: wrapToma(await createSession(FIXTURE, { ratio: o.ratio, mode: 'segments' }, ortOptions)) });
    // the same cut with every block at ratio 0: toma's dense attention kernel between the pieces,
    // separating what the fused kernel buys from what merging buys
    runners.push({ label: 'segments r=0', r: wrapToma(await createSession(FIXTURE, { ratio: () => 0, mode: 'segments' }, ortOptions)) });
    try {
      runners.push({ label: 'standard-ops', r: wrapToma(await createSession(FIXTURE, { ratio: o.ratio, mode: 'standard-ops' }, ortOptions)) });
    } catch (e) {
      runners.push({ label: 'standard-ops', error: (e as Error).message });
    }
    // quality, once per config (deterministic)
    const ref = await loop(runners[0].r!, start, ctx, o.steps, shape);
    const quality = new Map<string, { lastOutput: number; finalSample: number }>();
    for (const x of runners)
      if (x.r) {
        const q = await loop(x.r, start, ctx, o.steps, shape);
        quality.set(x.label, { lastOutput: relativeError(q.last, ref.last), finalSample: relativeError(q.sample, ref.sample) });
      }
    const live = runners.filter((x) => x.r);
    const entries: Entry[] = live.map((x) => ({ label: x.label, fn: () => loop(x.r!, start, ctx, o.steps, shape) }));
    const stats: Stats[] = await measureInterleaved(entries, { warmup: o.warmup, reps: o.reps, gapMs: 50 });
    const base = stats[0].medianMs;
    for (const x of runners) {
      const i = live.indexOf(x);
      const st = i >= 0 ? stats[i] : undefined;
      const s = x.r?.stats?.() as SegmentSessionStats | undefined;
      const perStep = st ? st.medianMs / o.steps : undefined;
      const row = {
        config,
        mode: x.label,
        stepMs: perStep,
        q1: st ? st.q1Ms / o.steps : undefined,
        q3: st ? st.q3Ms / o.steps : undefined,
        speedup: st ? base / st.medianMs : undefined,
        ortShare: s && s.totalMs ? s.ortMs / s.totalMs : undefined,
        tomaShare: s && s.totalMs && s.mode === 'segments' ? s.tomaMs / s.totalMs : undefined,
        lastOutput: quality.get(x.label)?.lastOutput,
        finalSample: quality.get(x.label)?.finalSample,
        note: x.error ? `n/a: ${x.error}` : '',
      };
      rows.push(row);
      results.push({ ...row, loopStats: st, sessionStats: s });
    }
    for (const x of runners) await x.r?.release();
  }
  const contention = watch();
  process.stdout.write(
    `${formatTable(
      [
        { title: 'ort threads', value: (r) => r.config as string, align: 'left' },
        { title: 'mode', value: (r) => r.mode as string, align: 'left' },
        { title: 'ms/step', value: (r) => r.stepMs as number, digits: 1 },
        { title: 'q1', value: (r) => r.q1 as number, digits: 1 },
        { title: 'q3', value: (r) => r.q3 as number, digits: 1 },
        { title: 'vs original', value: (r) => (r.speedup === undefined ? 'n/a' : `${(r.speedup as number).toFixed(2)}x`) },
        { title: 'ort %', value: (r) => (r.ortShare === undefined ? undefined : 100 * (r.ortShare as number)), digits: 0 },
        { title: 'toma %', value: (r) => (r.tomaShare === undefined ? undefined : 100 * (r.tomaShare as number)), digits: 0 },
        { title: 'rel diff last out', value: (r) => r.lastOutput as number, digits: 4 },
        { title: 'rel diff final sample', value: (r) => r.finalSample as number, digits: 4 },
        { title: 'note', value: (r) => r.note as string, align: 'left' },
      ],
      rows,
    )}\n\n${formatContention(contention)}\n`,
  );
  const best = rows.filter((r) => (r.mode === 'segments' || r.mode === 'standard-ops') && typeof r.speedup === 'number').sort((a, b) => (b.speedup as number) - (a.speedup as number))[0];
  if (best)
    process.stdout.write(
      `fastest patched: ${best.mode} (${best.config}) ${(best.speedup as number).toFixed(2)}x per denoising step; target >= 1.5x: ${(best.speedup as number) >= 1.5 ? 'met' : 'NOT met'}\n`,
    );
  if (o.json) {
    const file = writeResults('onnx-e2e', { header, options: o, contention, rows: results });
    process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
