// Child of pin.test.ts (run with --expose-gc): ops in flight while the caller drops the typed
// arrays they read (`x.data = null`) and forces a collection. The binding pins the arrays, so this
// must finish with correct results; before they were pinned it read freed memory (SIGSEGV).
const addon = require(process.env.TOMA_PIN_ADDON);
const [B, H, W, C] = [8, 64, 64, 512];
const T = H * W;

function tensor(seed) {
  const data = new Float32Array(B * T * C);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.618 + seed);
  return { data, shape: [B, T, C], dtype: 'float32' };
}

(async () => {
  const x = tensor(1);
  const plan = await addon.computePlan(x, { grid: [H, W], ratio: 0.5, backend: 'cpu' });
  const reference = await addon.merge(x, plan, { backend: 'cpu' });
  const runs = [1, 2, 3].map(() => {
    const xi = tensor(1);
    const p = addon.merge(xi, plan, { backend: 'cpu' });
    xi.data = null;  // the only JS reference to the array the worker is reading
    return p;
  });
  for (let i = 0; i < 4; i++) global.gc();
  const outs = await Promise.all(runs);
  for (const o of outs)
    for (let i = 0; i < o.data.length; i += 997)
      if (o.data[i] !== reference.data[i]) throw new Error(`merge result differs at ${i}`);
  console.log('ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
