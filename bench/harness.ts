// The shared benchmark harness: warm-up, N timed repetitions, median and spread, GFLOP/s, a header
// naming the machine and the versions compared, a table for people and JSON for machines in
// bench/results/<name>-<date>.json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { execFileSync } from 'node:child_process';

import { addonPath, loadAddon } from '../lib/native';

export interface MeasureOptions {
  /** Untimed calls before the timed ones. */
  warmup: number;
  /** Timed calls. */
  reps: number;
  /** Floating-point operations of one call; gives GFLOP/s at the median time. */
  flops?: number;
}

export interface Stats {
  label: string;
  warmup: number;
  reps: number;
  /** Every timed call, in milliseconds, in the order run. */
  samplesMs: number[];
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** First and third quartiles (linear interpolation). */
  q1Ms: number;
  q3Ms: number;
  meanMs: number;
  flops?: number;
  /** flops / median time. */
  gflops?: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function summarize(label: string, samplesMs: number[], warmup: number, flops?: number): Stats {
  const s = [...samplesMs].sort((a, b) => a - b);
  const medianMs = quantile(s, 0.5);
  return {
    label,
    warmup,
    reps: samplesMs.length,
    samplesMs,
    medianMs,
    minMs: s[0],
    maxMs: s[s.length - 1],
    q1Ms: quantile(s, 0.25),
    q3Ms: quantile(s, 0.75),
    meanMs: s.reduce((a, b) => a + b, 0) / s.length,
    flops,
    gflops: flops === undefined ? undefined : flops / (medianMs * 1e6),
  };
}

/** Times `fn` (awaited) `reps` times after `warmup` untimed calls. */
export async function measure(label: string, fn: () => Promise<unknown> | unknown, o: MeasureOptions): Promise<Stats> {
  for (let i = 0; i < o.warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < o.reps; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return summarize(label, samples, o.warmup, o.flops);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Entry {
  label: string;
  fn: () => Promise<unknown> | unknown;
  flops?: number;
  /** fn makes this many calls of the op (a sequence such as 1 plan + 5 calls): times are per call. */
  calls?: number;
}

/**
 * Times several functions round-robin: each repetition runs every entry once, so a slow drift of
 * the machine (another process starting, clocks changing) lands on all of them alike and their
 * ratios stay meaningful. `gapMs` of untimed idle before each call lets the previous call's
 * worker threads (onnxruntime's spin-waiting pool) go to sleep first.
 */
export async function measureInterleaved(entries: Entry[], o: Omit<MeasureOptions, 'flops'> & { gapMs?: number }): Promise<Stats[]> {
  const gap = o.gapMs ?? 25;
  const samples: number[][] = entries.map(() => []);
  for (let rep = 0; rep < o.warmup + o.reps; rep++) {
    for (let i = 0; i < entries.length; i++) {
      if (gap > 0) await sleep(gap);
      const t0 = performance.now();
      await entries[i].fn();
      const dt = (performance.now() - t0) / (entries[i].calls ?? 1);
      if (rep >= o.warmup) samples[i].push(dt);
    }
  }
  return entries.map((e, i) => summarize(e.label, samples[i], o.warmup, e.flops));
}

// ---------------------------------------------------------------------------------------------
// Data

/** A seeded generator: splitmix32 for uniforms, Box-Muller for Gaussians. */
export class Rng {
  private s: number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in (0, 1). */
  uniform(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z = (z ^ (z >>> 16)) >>> 0;
    return (z + 0.5) / 4294967296;
  }
  gaussian(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const t = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(t);
    return r * Math.cos(t);
  }
  gaussianArray(n: number, std = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.gaussian() * std;
    return a;
  }
}

/** ||a - b|| / ||b|| in float64. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`relativeError: lengths differ (${a.length} vs ${b.length})`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

// ---------------------------------------------------------------------------------------------
// Contention: CPU time other processes took while a benchmark ran (a shared 2-core machine
// makes every number meaningless while a build or a test suite runs beside it).

function procStatBusyMs(): number | undefined {
  try {
    const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    const busy = cpu.reduce((a, b) => a + b, 0) - cpu[3] - (cpu[4] ?? 0);
    const hz = 100; // USER_HZ on Linux
    return (busy * 1000) / hz;
  } catch {
    return undefined;
  }
}

export interface Contention {
  wallMs: number;
  /** CPU time of this process (all threads). */
  ownCpuMs: number;
  /** CPU time of every other process, from /proc/stat; undefined off Linux. */
  otherCpuMs?: number;
  /** otherCpuMs / (wallMs * cores): 0 on a quiet machine. */
  otherShare?: number;
  loadavg: number[];
}

/** Starts watching; the returned function reports what happened since. */
export function watchContention(): () => Contention {
  const t0 = performance.now();
  const own0 = process.cpuUsage();
  const busy0 = procStatBusyMs();
  return () => {
    const wallMs = performance.now() - t0;
    const own = process.cpuUsage(own0);
    const ownCpuMs = (own.user + own.system) / 1000;
    const busy1 = procStatBusyMs();
    const cores = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
    const otherCpuMs = busy0 === undefined || busy1 === undefined ? undefined : Math.max(0, busy1 - busy0 - ownCpuMs);
    return {
      wallMs,
      ownCpuMs,
      otherCpuMs,
      otherShare: otherCpuMs === undefined ? undefined : otherCpuMs / (wallMs * cores),
      loadavg: os.loadavg(),
    };
  };
}

export function formatContention(c: Contention): string {
  const share = c.otherShare === undefined ? 'unknown' : `${(100 * c.otherShare).toFixed(1)}%`;
  const warn = c.otherShare !== undefined && c.otherShare > 0.05 ? '  WARNING: other processes were busy; rerun on a quiet machine' : '';
  return `other processes used ${share} of the machine during the run (load ${c.loadavg.map((l) => l.toFixed(2)).join(' ')})${warn}`;
}

// ---------------------------------------------------------------------------------------------
// Header

export interface Header {
  date: string;
  cpuModel: string;
  cores: number;
  node: string;
  platform: string;
  tomaCpuIsa: string;
  tomaThreads: number;
  /** The .node file loaded, and when it was built. */
  tomaAddon?: string;
  tomaAddonBuilt?: string;
  /** The repository's commit, '+dirty' when the work tree differs from it. */
  git?: string;
  onnxruntime?: string;
  env: Record<string, string>;
  [key: string]: unknown;
}

function packageVersion(name: string): string | undefined {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

function gitRevision(): string | undefined {
  try {
    const opts = { cwd: path.join(__dirname, '..'), stdio: 'pipe' as const, encoding: 'utf8' as const };
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], opts).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], opts).trim() !== '';
    return dirty ? `${rev}+dirty` : rev;
  } catch {
    return undefined;
  }
}

export function collectHeader(extra: Record<string, unknown> = {}): Header {
  const info = loadAddon().backendInfo();
  const addon = addonPath();
  let built: string | undefined;
  try {
    built = addon ? fs.statSync(addon).mtime.toISOString() : undefined;
  } catch {
    built = undefined;
  }
  const env: Record<string, string> = {};
  for (const k of ['TOMA_NUM_THREADS', 'TOMA_CPU_ISA', 'TOMA_BACKEND', 'TOMA_ADDON', 'OMP_NUM_THREADS'])
    if (process.env[k] !== undefined) env[k] = process.env[k] as string;
  return {
    date: new Date().toISOString(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    tomaCpuIsa: info.cpuIsa,
    tomaThreads: info.threads,
    tomaAddon: addon ? path.relative(path.join(__dirname, '..'), addon) : undefined,
    tomaAddonBuilt: built,
    git: gitRevision(),
    onnxruntime: packageVersion('onnxruntime-node'),
    env,
    ...extra,
  };
}

export function formatHeader(h: Header): string {
  const lines = [
    `date        ${h.date}`,
    `cpu         ${h.cpuModel} (${h.cores} cores)`,
    `node        ${h.node} ${h.platform}`,
    `toma        cpuIsa=${h.tomaCpuIsa} threads=${h.tomaThreads} addon=${h.tomaAddon ?? '?'} (built ${h.tomaAddonBuilt ?? '?'}) git=${h.git ?? '?'}`,
    `onnxruntime ${h.onnxruntime ?? 'not installed'}`,
  ];
  const env = Object.entries(h.env);
  if (env.length) lines.push(`env         ${env.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Output

export interface Column<R> {
  title: string;
  value: (row: R) => string | number | undefined;
  /** Digits after the point for numbers; default 2. */
  digits?: number;
  align?: 'left' | 'right';
}

export function formatTable<R>(columns: Column<R>[], rows: R[]): string {
  const cells = rows.map((r) =>
    columns.map((c) => {
      const v = c.value(r);
      if (v === undefined || (typeof v === 'number' && !Number.isFinite(v))) return '-';
      return typeof v === 'number' ? v.toFixed(c.digits ?? 2) : v;
    }),
  );
  const widths = columns.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i].length)));
  const pad = (s: string, i: number) =>
    (columns[i].align ?? (i === 0 ? 'left' : 'right')) === 'left' ? s.padEnd(widths[i]) : s.padStart(widths[i]);
  const line = (row: string[]) => row.map(pad).join('  ').trimEnd();
  return [line(columns.map((c) => c.title)), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

export const resultsDir = path.join(__dirname, 'results');

/** Writes bench/results/<name>-<date>.json (written through a .tmp file) and returns its path. */
export function writeResults(name: string, payload: unknown, date = new Date()): string {
  fs.mkdirSync(resultsDir, { recursive: true });
  const stamp = date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const file = path.join(resultsDir, `${name}-${stamp}.json`);
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(payload, null, 2)}\n`);
  fs.renameSync(`${file}.tmp`, file);
  return file;
}
