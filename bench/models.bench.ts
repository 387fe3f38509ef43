// Whole models end to end (issue: real models, never slower): every file of the corpus of real
// diffusers exports (models/corpus) run as a denoising loop in onnxruntime-node as exported and
// through toma's sessions, in one run, on the same inputs:
//   original       onnxruntime-node, the model as exported
//   default        toma.onnx.createSession(path, { ratio }) with no other option: what a user gets
//   segments       mode 'segments', default dense blocks
//   standard-ops   mode 'standard-ops', default dense blocks
//   all merged     the default mode with dense: [] (every self/joint block merged)
// The loop: x <- x + 0.1 (model(x) - x), `steps` times from the reference input (the model's
// latent64 reference where it has one: a 64x64 latent), beginImage() first, the reuse schedule
// on. Per step = loop time / steps (median of the interleaved repetitions). Quality: relative
// difference from the original's loop of the last step's output and of the final x.
//
// Every variant runs under each onnxruntime configuration (--configs): 'spin' (its defaults: pool
// threads spin-wait after each run) and 'nospin' (session.intra_op.allow_spinning = 0), and is
// compared with the original under the same one, and with the faster original of the two.
//
//   npx tsx bench/models.bench.ts [--steps N] [--reps N] [--ratio R] [--only REGEX] [--threads N]
//                                 [--configs spin,nospin] [--variants default,segments,...] [--no-twin]
//                                 [--full DIR] [--no-json]
// --full DIR adds the real-width exports made by `scripts/corpus/export.py --full sd15` (not
// committed: several GB).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';

import { createSession, type TomaSession } from '../lib/onnx';
import { corpus, feeds as referenceFeeds, modelPath, type CorpusModel, type Reference } from '../test/onnx/corpus';
import { collectHeader, formatContention, formatHeader, formatTable, measureInterleaved, relativeError, watchContention, writeResults, type Entry } from './harness';

interface Options {
  configs: string[];
  /** Which toma variants to run (each holds its own onnxruntime sessions: mind the memory of big models). */
  variants: string[];
  /** Time a second session of the original (the noise floor). */
  twin: boolean;
  steps: number;
  reps: number;
  ratio: number;
  only?: RegExp;
  threads: number;
  full?: string;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { configs: ['spin', 'nospin'], variants: ['default', 'segments', 'standard-ops', 'all merged'], twin: true, steps: 20, reps: 2, ratio: 0.5, threads: 2, json: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new RangeError(`${a} needs a value`);
      return v;
    };
    if (a === '--steps') o.steps = Number(next());
    else if (a === '--reps') o.reps = Number(next());
    else if (a === '--ratio') o.ratio = Number(next());
    else if (a === '--only') o.only = new RegExp(next());
    else if (a === '--threads') o.threads = Number(next());
    else if (a === '--full') o.full = next();
    else if (a === '--configs') o.configs = next().split(',');
    else if (a === '--variants') o.variants = next().split(',');
    else if (a === '--no-twin') o.twin = false;
    else if (a === '--no-json') o.json = false;
    else throw new RangeError(`unknown argument ${a}`);
  }
  for (const c of o.configs) if (!(c in CONFIGS)) throw new RangeError(`--configs: unknown ${c} (spin, nospin)`);
  return o;
}

interface Runner {
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  beginImage(): void;
  release(): Promise<void>;
  toma?: TomaSession;
}

/**
 * The input the loop feeds back: the one shaped like the first output, or like its leading
 * channels (PixArt and DiT also predict a variance: [B, 2C, H, W] for a [B, C, H, W] latent).
 */
function loopInput(ref: Reference): { input: string; output: string; channels?: number } {
  const out = ref.outputs[0];
  const same = ref.inputs.find((t) => t.dtype === out.dtype && t.shape.join() === out.shape.join());
  if (same) return { input: same.name, output: out.name };
  const lead = ref.inputs.find(
    (t) => t.dtype === out.dtype && t.shape.length === out.shape.length && t.shape[0] === out.shape[0] && t.shape.slice(2).join() === out.shape.slice(2).join() && t.shape[1] < out.shape[1],
  );
  if (!lead) throw new Error(`no input of ${JSON.stringify(out.shape)} to feed ${out.name} back into`);
  return { input: lead.name, output: out.name, channels: lead.shape[1] };
}

async function loop(r: Runner, start: Record<string, ort.Tensor>, io: ReturnType<typeof loopInput>, steps: number) {
  r.beginImage();
  const x0 = start[io.input];
  const dims = x0.dims as number[];
  let x = Float32Array.from(x0.data as Float32Array);
  let last: Float32Array = x;
  for (let i = 0; i < steps; i++) {
    const out = await r.run({ ...start, [io.input]: new ort.Tensor('float32', x, dims) });
    last = out[io.output].data as Float32Array;
    // the leading channels of a wider output (per batch element)
    const per = x.length / dims[0];
    const outPer = last.length / dims[0];
    const next = new Float32Array(x.length);
    for (let b = 0; b < dims[0]; b++)
      for (let j = 0; j < per; j++) next[b * per + j] = x[b * per + j] + 0.1 * (last[b * outPer + j] - x[b * per + j]);
    x = next;
  }
  return { last, x };
}

interface Target {
  key: string;
  file: string;
  family: string;
  ref: Reference;
  feeds: Record<string, ort.Tensor>;
}

function targets(o: Options): Target[] {
  const list: Target[] = corpus().map((m: CorpusModel) => {
    const ref = m.references.find((r) => r.name === 'latent64') ?? m.references[0];
    return { key: m.key, file: modelPath(m), family: m.family, ref, feeds: referenceFeeds(ref) };
  });
  if (o.full) {
    // real-width exports (DIR/<name>/model.onnx + manifest.json) share the small export's interface:
    // its latent64 inputs, with text states as wide as the real model's cross-attention
    for (const name of fs.existsSync(o.full) ? fs.readdirSync(o.full) : []) {
      const dir = path.join(o.full, name);
      const file = path.join(dir, 'model.onnx');
      const base = list.find((t) => t.key === name);
      if (!base || !fs.existsSync(file)) continue;
      const man = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { config: { cross_attention_dim: number } };
      const wide = man.config.cross_attention_dim;
      const t = base.feeds.encoder_hidden_states;
      const [B, L] = t.dims as number[];
      const ctx = new Float32Array(B * L * wide).map((_, i) => Math.sin(i * 0.37));
      list.push({ ...base, key: `${name} (real width)`, file, feeds: { ...base.feeds, encoder_hidden_states: new ort.Tensor('float32', ctx, [B, L, wide]) } });
    }
  }
  return list.filter((t) => !o.only || o.only.test(t.key));
}

/** The README's model-support table: per model, the default and every block merged, under onnxruntime's defaults. */
function markdown(rows: Array<Record<string, unknown>>, o: Options): string {
  const cfg = o.configs.includes('spin') ? 'spin' : o.configs[0];
  const models = [...new Set(rows.map((r) => r.model as string))];
  const fmt = (x: unknown, d = 2) => (typeof x === 'number' ? x.toFixed(d) : 'n/a');
  const lines = [
    `| model | blocks merged by default | default: speed-up (vs faster original) | diff of final x | every block merged: speed-up | diff |`,
    `|---|---|---|---|---|---|`,
  ];
  for (const m of models) {
    const at = (v: string) => rows.find((r) => r.model === m && r.config === cfg && r.variant === v);
    const d = at('default');
    const a = at('all merged');
    const total = (a?.patched as number | undefined) ?? '?';
    lines.push(
      `| ${m} | ${d?.patched ?? '?'} of ${total} | ${fmt(d?.speedup)}x (${fmt(d?.vsBestOriginal)}x) | ${fmt(d?.finalSample, 4)} | ${fmt(a?.speedup)}x | ${fmt(a?.finalSample, 4)} |`,
    );
  }
  return lines.join('\n');
}

/** onnxruntime settings users run with: its defaults, and spin-waiting off (toma's pieces use that). */
const CONFIGS: Record<string, ort.InferenceSession.SessionOptions['extra']> = {
  spin: undefined,
  nospin: { session: { intra_op: { allow_spinning: '0' } } },
};

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const header = collectHeader({ bench: 'models', steps: o.steps, ratio: o.ratio, ortIntraOpThreads: o.threads });
  process.stdout.write(`${formatHeader(header)}\n`);
  process.stdout.write(
    `models      the corpus (models/corpus): ${o.steps}-step loop, ratio ${o.ratio}, reuse schedule on, ${o.reps} interleaved repetitions;\n` +
      `            each config's sessions (the original's and toma's) share one set of onnxruntime options: ${o.configs.join(', ')}\n\n`,
  );
  const rows: Array<Record<string, unknown>> = [];
  const watch = watchContention();
  const quiet = { onWarning: () => undefined };
  for (const t of targets(o)) {
    const io = loopInput(t.ref);
    const ref = { x: new Float32Array(0), last: new Float32Array(0) };
    for (const cfg of o.configs) {
      const ortOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: o.threads, interOpNumThreads: 1, ...(CONFIGS[cfg] ? { extra: CONFIGS[cfg] } : {}) };
      const runners: Array<{ label: string; r: Runner }> = [];
      const plain = await ort.InferenceSession.create(t.file, ortOptions);
      runners.push({ label: 'original', r: { run: (f) => plain.run(f), beginImage: () => undefined, release: () => plain.release() } });
      // a second session of the same file: identical sessions differ by a few % (where their memory
      // lands), the noise floor any "slower" must be read against
      if (o.twin) {
        const twin = await ort.InferenceSession.create(t.file, ortOptions);
        runners.push({ label: 'original (2nd session)', r: { run: (f) => twin.run(f), beginImage: () => undefined, release: () => twin.release() } });
      }
      const all: Array<[string, Record<string, unknown>]> = [
        ['default', {}],
        ['segments', { mode: 'segments' }],
        ['standard-ops', { mode: 'standard-ops' }],
        ['all merged', { dense: [] }],
      ];
      const configs = all.filter(([label]) => o.variants.includes(label));
      for (const [label, extra] of configs) {
        try {
          const s = await createSession(t.file, { ratio: o.ratio, ...quiet, ...extra }, ortOptions);
          runners.push({ label, r: { run: (f) => s.run(f), beginImage: () => s.beginImage(), release: () => s.release(), toma: s } });
        } catch (e) {
          rows.push({ model: t.key, config: cfg, variant: label, note: `n/a: ${(e as Error).message.slice(0, 120)}` });
        }
      }
      // one untimed image each (builds shape variants, gives the quality numbers), then the timings
      const quality = new Map<string, { last: number; final: number }>();
      const base = await loop(runners[0].r, t.feeds, io, o.steps);
      if (!ref.x.length) Object.assign(ref, base);
      for (const x of runners.slice(1)) {
        const q = await loop(x.r, t.feeds, io, o.steps);
        quality.set(x.label, { last: relativeError(q.last, ref.last), final: relativeError(q.x, ref.x) });
      }
      const entries: Entry[] = runners.map((x) => ({ label: x.label, fn: () => loop(x.r, t.feeds, io, o.steps) }));
      const stats = await measureInterleaved(entries, { warmup: 0, reps: o.reps, gapMs: 20 });
      runners.forEach((x, i) => {
        const st = x.r.toma?.stats();
        rows.push({
          model: t.key,
          family: t.family,
          config: cfg,
          variant: x.label,
          mode: st?.mode ?? 'onnxruntime',
          input: Object.fromEntries(t.ref.inputs.map((inp) => [inp.name, inp.shape])),
          stepMs: stats[i].medianMs / o.steps,
          q1Ms: stats[i].q1Ms / o.steps,
          q3Ms: stats[i].q3Ms / o.steps,
          speedup: stats[0].medianMs / stats[i].medianMs,
          patched: st ? st.patchedBlocks.length : undefined,
          lastOutput: quality.get(x.label)?.last,
          finalSample: quality.get(x.label)?.final,
          sessionStats: st,
        });
      });
      for (const x of runners) await x.r.release();
    }
    // against the faster original of the configs: no speed-up may come from a slower peer
    const mine = rows.filter((r) => r.model === t.key && typeof r.stepMs === 'number');
    const best = Math.min(...mine.filter((r) => r.variant === 'original').map((r) => r.stepMs as number));
    for (const r of mine) r.vsBestOriginal = best / (r.stepMs as number);
    process.stdout.write(
      `${t.key}: ${mine.filter((r) => r.variant !== 'original').map((r) => `${r.config}/${r.variant} ${(r.speedup as number).toFixed(2)}x`).join(', ')}\n`,
    );
  }
  const contention = watch();
  process.stdout.write(
    `\n${formatTable(
      [
        { title: 'model', value: (r) => r.model as string, align: 'left' },
        { title: 'ort', value: (r) => r.config as string, align: 'left' },
        { title: 'variant', value: (r) => r.variant as string, align: 'left' },
        { title: 'mode', value: (r) => (r.mode as string) ?? '', align: 'left' },
        { title: 'ms/step', value: (r) => r.stepMs as number, digits: 1 },
        { title: 'vs original', value: (r) => (r.speedup === undefined ? 'n/a' : `${(r.speedup as number).toFixed(2)}x`) },
        { title: 'vs best original', value: (r) => (r.vsBestOriginal === undefined ? '' : `${(r.vsBestOriginal as number).toFixed(2)}x`) },
        { title: 'patched', value: (r) => (r.patched === undefined ? '' : String(r.patched)) },
        { title: 'diff last out', value: (r) => r.lastOutput as number, digits: 4 },
        { title: 'diff final x', value: (r) => r.finalSample as number, digits: 4 },
        { title: 'note', value: (r) => (r.note as string) ?? '', align: 'left' },
      ],
      rows,
    )}\n\n${formatContention(contention)}\n`,
  );
  // "never slower": the default against the original run with the same onnxruntime options; a
  // model toma leaves alone runs the original's own session, so only timing noise separates them
  // against the slower of the two original sessions: their difference is noise, not toma
  const slower = rows.filter((r) => {
    if (r.variant !== 'default' || typeof r.stepMs !== 'number') return false;
    const twins = rows.filter((x) => x.model === r.model && x.config === r.config && (x.variant === 'original' || x.variant === 'original (2nd session)'));
    return (r.stepMs as number) > Math.max(...twins.map((x) => x.stepMs as number)) * 1.02;
  });
  process.stdout.write(
    slower.length
      ? `default slower than both original sessions (by more than 2%) on: ${slower.map((r) => `${r.model} [${r.config}] (${(r.speedup as number).toFixed(2)}x, ${r.patched} patched)`).join(', ')}\n`
      : 'default: never slower than the original (within the spread of two sessions of the original)\n',
  );
  process.stdout.write(`\n${markdown(rows, o)}\n`);
  if (o.json) {
    const file = writeResults('models', { header, options: { ...o, only: o.only?.source }, contention, rows });
    process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
