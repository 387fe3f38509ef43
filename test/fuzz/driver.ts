// Fuzz driver: forks runner.ts children (a batch of seeds each), collects the results, and turns
// a child that dies (signal, abort, non-zero exit, no 'done') into a crash of the running seed;
// the rest of that batch goes to a fresh child.
import { fork } from 'node:child_process';
import * as path from 'node:path';

import type { CaseResult } from './runner';

export interface FuzzSummary {
  cases: number;
  resolved: number;
  rejected: number;
  crashes: Array<{ seed: number; fn?: string; how: string }>;
  failures: CaseResult[];
  wrongClass: number;
  unnamed: number;
  mutatedInputs: number;
  acceptedInvalid: number;
  hangs: number;
  byFunction: Record<string, { cases: number; resolved: number; failures: number }>;
  byKind: Record<string, number>;
  seconds: number;
}

export interface FuzzOptions {
  cases: number;
  /** First seed; case i has seed start + i. */
  start?: number;
  batch?: number;
  children?: number;
  onProgress?: (done: number, total: number) => void;
}

function runBatch(seeds: number[], results: CaseResult[], crashes: FuzzSummary['crashes']): Promise<void> {
  return new Promise((resolve) => {
    const child = fork(path.join(__dirname, 'runner.ts'), [], {
      execArgv: ['--import', 'tsx', '--max-old-space-size=1024'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, TOMA_FUZZ_CHILD: '1' },
    });
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr = (stderr + String(d)).slice(-4000);
    });
    let running: number | undefined;
    const done = new Set<number>();
    let finished = false;
    child.on('message', (m: { type: string; seed?: number; result?: CaseResult }) => {
      if (m.type === 'start') running = m.seed;
      else if (m.type === 'result') {
        results.push(m.result!);
        done.add(m.result!.seed);
        running = undefined;
      } else if (m.type === 'done') finished = true;
    });
    child.on('exit', async (code, signal) => {
      if (finished && code === 0) return resolve();
      const how = signal ? `killed by ${signal}` : `exit code ${code}`;
      const crashed = running ?? seeds.find((s) => !done.has(s));
      if (crashed !== undefined) crashes.push({ seed: crashed, how: `${how}; stderr: ${stderr.trim().split('\n').slice(-8).join(' | ')}` });
      else crashes.push({ seed: -1, how: `child ${how} after its cases` });
      const rest = seeds.filter((s) => !done.has(s) && s !== crashed);
      if (rest.length) await runBatch(rest, results, crashes);
      resolve();
    });
    child.send({ seeds });
  });
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzSummary> {
  const t0 = Date.now();
  const start = o.start ?? 1;
  const batch = o.batch ?? 250;
  const children = o.children ?? 2;
  const queue: number[][] = [];
  for (let i = 0; i < o.cases; i += batch) {
    const b: number[] = [];
    for (let j = i; j < Math.min(o.cases, i + batch); j++) b.push(start + j);
    queue.push(b);
  }
  const results: CaseResult[] = [];
  const crashes: FuzzSummary['crashes'] = [];
  const worker = async () => {
    for (let b = queue.shift(); b; b = queue.shift()) {
      await runBatch(b, results, crashes);
      o.onProgress?.(results.length + crashes.length, o.cases);
    }
  };
  await Promise.all(Array.from({ length: children }, worker));
  const s: FuzzSummary = {
    cases: results.length + crashes.filter((c) => c.seed >= 0).length,
    resolved: results.filter((r) => r.outcome === 'resolved').length,
    rejected: results.filter((r) => r.outcome === 'rejected').length,
    crashes,
    failures: results.filter((r) => r.failures.length > 0),
    wrongClass: results.filter((r) => r.failures.some((f) => f.startsWith('wrong error class'))).length,
    unnamed: results.filter((r) => r.failures.some((f) => f.includes('message does not name'))).length,
    mutatedInputs: results.filter((r) => r.failures.some((f) => f.includes('changed'))).length,
    acceptedInvalid: results.filter((r) => r.failures.some((f) => f.startsWith('resolved although'))).length,
    hangs: results.filter((r) => r.failures.some((f) => f.startsWith('hang'))).length,
    byFunction: {},
    byKind: {},
    seconds: (Date.now() - t0) / 1000,
  };
  for (const r of results) {
    const f = (s.byFunction[r.fn] ??= { cases: 0, resolved: 0, failures: 0 });
    f.cases++;
    if (r.outcome === 'resolved') f.resolved++;
    if (r.failures.length) f.failures++;
    const k = r.outcome === 'resolved' ? 'resolved' : (r.kind ?? r.errorClass ?? '?');
    s.byKind[k] = (s.byKind[k] ?? 0) + 1;
  }
  return s;
}

export function formatSummary(s: FuzzSummary, maxFailures = 25): string {
  const lines = [
    `fuzz: ${s.cases} cases in ${s.seconds.toFixed(1)} s: ${s.resolved} resolved, ${s.rejected} rejected; ` +
      `${s.crashes.length} crashes, ${s.wrongClass} wrong error classes, ${s.unnamed} messages not naming the argument, ` +
      `${s.mutatedInputs} mutated inputs, ${s.acceptedInvalid} invalid inputs accepted, ${s.hangs} hangs`,
    `  outcomes: ${JSON.stringify(s.byKind)}`,
    `  per function: ${Object.entries(s.byFunction).map(([k, v]) => `${k} ${v.cases}/${v.resolved} ok${v.failures ? ` ${v.failures} FAIL` : ''}`).join(', ')}`,
  ];
  for (const c of s.crashes) lines.push(`  CRASH seed ${c.seed}: ${c.how}`);
  for (const f of s.failures.slice(0, maxFailures)) lines.push(`  FAIL seed ${f.seed} ${f.fn} [${f.mutations.join('; ')}]: ${f.failures.join(' / ')}`);
  if (s.failures.length > maxFailures) lines.push(`  ... ${s.failures.length - maxFailures} more failures`);
  lines.push('  reproduce one case: npx tsx test/fuzz/cli.ts --seed <seed> --cases 1');
  return lines.join('\n');
}
