// Leaks: 10,000 computePlan / merge / unmerge / mergeAttentionUnmerge cycles on tiny tensors grow
// the RSS by less than 1 MB after GC (measured after a 500-cycle warm-up, in a child process run
// with --expose-gc). The scratch pool (csrc/core/scratch.h) keeps its buffers by design; the
// warm-up fills it, and tiny tensors keep it tiny. DeviceTensor create / dispose is not covered:
// this build has no DeviceTensor API and CI has no GPU.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

import { addonPath, computePlan } from '../../lib';

test('10,000 plan/merge/unmerge/mergeAttentionUnmerge cycles grow RSS by < 1 MB', async () => {
  // load the addon here to learn which file the library uses
  await computePlan({ data: new Float32Array(16), shape: [1, 4, 4], dtype: 'float32' }, { grid: [2, 2], ratio: 0 });
  const out = execFileSync(process.execPath, ['--expose-gc', path.join(__dirname, 'leak-child.js')], {
    env: { ...process.env, TOMA_LEAK_ADDON: addonPath(), TOMA_LEAK_CYCLES: process.env.TOMA_LEAK_CYCLES ?? '10000' },
    encoding: 'utf8',
    timeout: 240000,
  });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { before: number; after: number; delta: number; cycles: number; ms: number };
  console.log(`leak: ${r.cycles} cycles in ${r.ms} ms, RSS ${(r.before / 2 ** 20).toFixed(1)} MB -> ${(r.after / 2 ** 20).toFixed(1)} MB (delta ${(r.delta / 1024).toFixed(0)} KB)`);
  expect(r.delta).toBeLessThan(2 ** 20);
}, 300000);
