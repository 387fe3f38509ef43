// `toma info`: which backend runs, and what merging buys at one attention shape, measured now.
import { backend } from '../backend';
import { attention, computePlan, mergeAttentionUnmerge } from '../ops';
import type { Tensor } from '../types';

export interface InfoOptions {
  /** Any of grid / channels / heads given: that one shape; none: SDXL's two (SHAPES). */
  grid?: number;
  channels?: number;
  heads?: number;
  batch: number;
  ratio: number;
}

interface Shape {
  grid: number;
  channels: number;
  heads: number;
  note: string;
}

// SDXL's self-attention shapes: 10 blocks at 64x64, 60 at 32x32 (where it spends its time).
const SHAPES: Shape[] = [
  { grid: 64, channels: 640, heads: 10, note: 'SDXL, 10 of 70 blocks' },
  { grid: 32, channels: 1280, heads: 20, note: 'SDXL, 60 of 70 blocks' },
];

/** Plans per call under the reuse schedule's default (a new plan every 5 steps). */
const AMORTISE = 5;

function gaussian(n: number, seed: number): Float32Array {
  // xorshift32 + Box-Muller: reproducible without a dependency.
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next()));
    const t = 2 * Math.PI * next();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

async function time<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const r = await f();
  return [r, Number(process.hrtime.bigint() - t0) / 1e6];
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

export async function runInfo(o: InfoOptions): Promise<void> {
  const b = backend();
  const out = process.stdout;
  out.write(`backend: ${b.name}${b.device ? ` (${b.device})` : ''}${b.reason ? ` — ${b.reason}` : ''}\n`);
  out.write(`CUDA compiled in: ${b.cudaCompiled ? 'yes' : 'no'}\n`);
  const custom = o.grid !== undefined || o.channels !== undefined || o.heads !== undefined;
  const shapes = custom
    ? [{ grid: o.grid ?? 64, channels: o.channels ?? 640, heads: o.heads ?? 10, note: 'as given' }]
    : SHAPES;
  for (const s of shapes) await infoShape(s, o);
}

async function infoShape(s: Shape, o: InfoOptions): Promise<void> {
  const out = process.stdout;
  const N = s.grid * s.grid;
  const shape = [o.batch, N, s.channels];
  const mk = (seed: number): Tensor => ({ data: gaussian(o.batch * N * s.channels, seed), shape, dtype: 'float32' });
  const [q, k, v] = [mk(1), mk(2), mk(3)];
  const heads = s.heads;
  out.write(`\nshape: B=${o.batch}, N=${s.grid}x${s.grid}, C=${s.channels}, ${heads} heads, ratio ${o.ratio} (${s.note})\n`);
  const result: Tensor = { data: new Float32Array(o.batch * N * s.channels), shape, dtype: 'float32' };
  await attention(q, k, v, { heads }); // warm-up
  const [dense, tDense] = await time(() => attention(q, k, v, { heads }));
  const [plan, tPlan] = await time(() => computePlan(k, { grid: [s.grid, s.grid], ratio: o.ratio }));
  await mergeAttentionUnmerge(q, k, v, plan, { heads, out: result }); // warm-up of the pooled buffers
  const [merged, tMau] = await time(() => mergeAttentionUnmerge(q, k, v, plan, { heads, out: result }));
  const amortised = tPlan / AMORTISE + tMau;
  const rows = [
    ['dense attention', tDense.toFixed(1), '1.00x'],
    ['computePlan', tPlan.toFixed(1), ''],
    ['mergeAttentionUnmerge', tMau.toFixed(1), `${(tDense / tMau).toFixed(2)}x`],
    ['plan + merged attention', (tPlan + tMau).toFixed(1), `${(tDense / (tPlan + tMau)).toFixed(2)}x`],
    [`1 plan per ${AMORTISE} calls`, amortised.toFixed(1), `${(tDense / amortised).toFixed(2)}x`],
  ];
  out.write(`${'op'.padEnd(26)}${'ms'.padStart(10)}${'speed-up'.padStart(10)}\n`);
  for (const r of rows) out.write(`${r[0].padEnd(26)}${r[1].padStart(10)}${r[2].padStart(10)}\n`);
  out.write(
    `K = ${plan.K} of ${N} tokens kept; relative difference of the merged output from dense: ` +
      `${relErr(merged.data as Float32Array, dense.data as Float32Array).toFixed(3)} (random tokens are the worst case)\n`,
  );
}
