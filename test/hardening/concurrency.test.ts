// Concurrency: 64 concurrent calls of every op give bitwise the results of sequential calls, and
// the addon works from 4 worker_threads at once; the workers exit with code 0 and the main
// thread keeps working after they have unloaded their instances of the addon.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import * as toma from '../../lib';
import { addonPath } from '../../lib';
import { randomTensor } from '../helpers/data';

const [B, P, H, W, C, heads] = [2, 3, 6, 6, 16, 4];
const T = P + H * W;
const OPTS: toma.PlanOptions = { grid: [H, W], ratio: 0.5, prefix: P, region: { kind: 'tile', th: 3, tw: 3 } };
const N_CONC = 64;

function bytes(v: unknown): string {
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  if (v !== null && typeof v === 'object' && 'matrices' in v) {
    const p = v as toma.Plan;
    return bytes(p.destinations) + '|' + p.K + '|' + p.matrices().map((m) => bytes(m.M) + bytes(m.U)).join(',');
  }
  const t = v as toma.Tensor;
  return `${t.dtype}:${t.shape.join('x')}:${bytes(t.data)}`;
}

describe.each(['float32', 'float16', 'bfloat16'] as const)('%s', (dtype) => {
  const x = randomTensor(`conc x ${dtype}`, [B, T, C], dtype).t;
  const q = randomTensor(`conc q ${dtype}`, [B, T, C], dtype).t;
  const k = randomTensor(`conc k ${dtype}`, [B, T, C], dtype).t;
  const v = randomTensor(`conc v ${dtype}`, [B, T, C], dtype).t;

  test(`${N_CONC} concurrent calls of every op equal sequential calls bitwise`, async () => {
    const plan = await toma.computePlan(x, OPTS);
    const merged = await toma.merge(x, plan);
    const assign = new Int32Array(B * H * W).map((_, i) => Math.floor((i % (H * W)) / 4));
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['selectDestinations', () => toma.selectDestinations(x, OPTS)],
      ['computePlan', () => toma.computePlan(x, OPTS)],
      ['merge', () => toma.merge(x, plan)],
      ['unmerge', () => toma.unmerge(merged, plan)],
      ['attention', () => toma.attention(q, k, v, { heads })],
      ['mergeAttentionUnmerge', () => toma.mergeAttentionUnmerge(q, k, v, plan, { heads })],
      ['mergeAttentionUnmerge proportional', () => toma.mergeAttentionUnmerge(q, k, v, plan, { heads, proportional: true, mergeQueries: false })],
      ['assignmentPlan', () => toma.assignmentPlan(assign, { grid: [H, W], K: 9, prefix: P })],
      ['tomesdPlan', () => toma.tomesdPlan(x, { grid: [H, W], ratio: 0.5, prefix: P, seed: 3 })],
    ];
    for (const [name, op] of ops) {
      const seq: string[] = [];
      for (let i = 0; i < 4; i++) seq.push(bytes(await op()));
      expect(new Set(seq).size).toBe(1); // deterministic
      const conc = await Promise.all(Array.from({ length: N_CONC }, () => op()));
      const bad = conc.map(bytes).filter((b) => b !== seq[0]).length;
      if (bad) throw new Error(`${name}: ${bad} of ${N_CONC} concurrent results differ from the sequential one`);
    }
    // all ops at once, interleaved
    const all = await Promise.all(Array.from({ length: N_CONC }, (_, i) => ops[i % ops.length][1]()));
    const ref = await Promise.all(ops.map(([, op]) => op().then(bytes)));
    all.forEach((r, i) => expect(bytes(r)).toBe(ref[i % ops.length]));
  });
});

test('the addon works from 4 worker_threads at once; they exit cleanly and the main thread keeps working', async () => {
  const dtype = 'float32';
  const x = randomTensor('worker x', [B, T, C], dtype).t;
  const q = randomTensor('worker q', [B, T, C], dtype).t;
  const k = randomTensor('worker k', [B, T, C], dtype).t;
  const v = randomTensor('worker v', [B, T, C], dtype).t;
  const plan = await toma.computePlan(x, OPTS);
  const out = await toma.mergeAttentionUnmerge(q, k, v, plan, { heads });
  const expected = { dest: bytes(plan.destinations), out: bytes(out.data) };
  const file = addonPath();
  expect(file).toBeDefined();
  const rounds = 5;
  const runs = Array.from({ length: 4 }, () => {
    const w = new Worker(path.join(__dirname, 'worker.js'), {
      workerData: { addonPath: file, x, q, k, v, planOptions: OPTS, heads, rounds },
    });
    const msg = new Promise<unknown>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    const exit = new Promise<number>((resolve) => w.once('exit', resolve));
    return { msg, exit };
  });
  // the main thread works meanwhile
  const during = await Promise.all(Array.from({ length: 16 }, () => toma.mergeAttentionUnmerge(q, k, v, plan, { heads })));
  for (const d of during) expect(bytes(d.data)).toBe(expected.out);
  for (const r of runs) {
    const m = (await r.msg) as Array<{ dest: string; out: string }> | { error: string };
    if (!Array.isArray(m)) throw new Error(`worker failed: ${m.error}`);
    expect(m).toHaveLength(rounds);
    for (const o of m) expect(o).toEqual(expected);
  }
  const codes = await Promise.all(runs.map((r) => r.exit));
  expect(codes).toEqual([0, 0, 0, 0]);
  // after the workers' addon instances are gone
  const plan2 = await toma.computePlan(x, OPTS);
  const after = await toma.mergeAttentionUnmerge(q, k, v, plan2, { heads });
  expect(bytes(after.data)).toBe(expected.out);
  expect(bytes(plan2.destinations)).toBe(expected.dest);
});
