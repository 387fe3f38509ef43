// `toma info`: which backend runs, and what merging buys at one attention shape, measured now.
import { backend } from '../backend';
import { attention, computePlan, mergeAttentionUnmerge } from '../ops';
import type { Tensor } from '../types';

export interface InfoOptions {
  grid: number;
  channels: number;
  heads: number;
  batch: number;
  ratio: number;
}

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
  const N = o.grid * o.grid;
  const shape = [o.batch, N, o.channels];
  const mk = (seed: number): Tensor => ({ data: gaussian(o.batch * N * o.channels, seed), shape, dtype: 'float32' });
  const [q, k, v] = [mk(1), mk(2), mk(3)];
  out.write(`shape: B=${o.batch}, N=${o.grid}x${o.grid}, C=${o.channels}, ${o.heads} heads, ratio ${o.ratio}\n`);
  await attention(q, k, v, { heads: o.heads }); // warm-up
  const [dense, tDense] = await time(() => attention(q, k, v, { heads: o.heads }));
  const [plan, tPlan] = await time(() => computePlan(k, { grid: [o.grid, o.grid], ratio: o.ratio }));
  const [merged, tMau] = await time(() => mergeAttentionUnmerge(q, k, v, plan, { heads: o.heads }));
  const rows = [
    ['dense attention', tDense.toFixed(1), '1.00x'],
    ['computePlan', tPlan.toFixed(1), ''],
    ['mergeAttentionUnmerge', tMau.toFixed(1), `${(tDense / tMau).toFixed(2)}x`],
    ['plan + merged attention', (tPlan + tMau).toFixed(1), `${(tDense / (tPlan + tMau)).toFixed(2)}x`],
  ];
  out.write(`\n${'op'.padEnd(26)}${'ms'.padStart(10)}${'speed-up'.padStart(10)}\n`);
  for (const r of rows) out.write(`${r[0].padEnd(26)}${r[1].padStart(10)}${r[2].padStart(10)}\n`);
  out.write(
    `\nK = ${plan.K} of ${N} tokens kept; relative difference of the merged output from dense: ` +
      `${relErr(merged.data as Float32Array, dense.data as Float32Array).toFixed(3)} (random tokens are the worst case)\n`,
  );
}
