// Child of leak.test.ts (run with --expose-gc): computePlan / merge / unmerge /
// mergeAttentionUnmerge cycles on tiny tensors; prints the RSS after a warm-up and after the
// measured cycles, both after GC, as JSON.
const addon = require(process.env.TOMA_LEAK_ADDON);
const WARM = Number(process.env.TOMA_LEAK_WARMUP ?? 500);
const CYCLES = Number(process.env.TOMA_LEAK_CYCLES ?? 10000);
const [B, P, H, W, C, heads] = [1, 1, 4, 4, 8, 2];
const T = P + H * W;
const rnd = (n, s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 0.5);
const t = (s) => ({ data: rnd(B * T * C, s), shape: [B, T, C], dtype: 'float32' });
const x = t(1), q = t(2), k = t(3), v = t(4);
const o = { grid: [H, W], ratio: 0.5, prefix: P, region: { kind: 'tile', th: 2, tw: 2 }, backend: 'cpu' };

async function cycle() {
  const plan = await addon.computePlan(x, o);
  const m = await addon.merge(x, plan, { backend: 'cpu' });
  await addon.unmerge(m, plan, { backend: 'cpu' });
  await addon.mergeAttentionUnmerge(q, k, v, plan, { heads, backend: 'cpu' });
}

async function settle() {
  for (let i = 0; i < 4; i++) {
    global.gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage();
}

(async () => {
  for (let i = 0; i < WARM; i++) await cycle();
  const before = await settle();
  const t0 = Date.now();
  for (let i = 0; i < CYCLES; i++) await cycle();
  const after = await settle();
  console.log(JSON.stringify({
    before: before.rss, after: after.rss, delta: after.rss - before.rss, cycles: CYCLES, ms: Date.now() - t0,
    heapDelta: after.heapTotal - before.heapTotal, externalDelta: after.external - before.external,
  }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
