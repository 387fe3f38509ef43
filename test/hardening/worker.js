// worker_threads body of concurrency.test.ts (plain JavaScript: workers load the addon directly,
// the way lib/native.ts does). Computes a plan + mergeAttentionUnmerge on the inputs it is given
// a few times and posts the bytes back.
const { parentPort, workerData } = require('node:worker_threads');
const addon = require(workerData.addonPath);

async function main() {
  const { x, q, k, v, planOptions, heads, rounds } = workerData;
  const outs = [];
  for (let i = 0; i < rounds; i++) {
    const plan = await addon.computePlan(x, { ...planOptions, backend: 'cpu' });
    const out = await addon.mergeAttentionUnmerge(q, k, v, plan, { heads, backend: 'cpu' });
    outs.push({ dest: Buffer.from(plan.destinations.buffer).toString('base64'), out: Buffer.from(out.data.buffer).toString('base64') });
  }
  parentPort.postMessage(outs);
}
main().catch((e) => {
  parentPort.postMessage({ error: String(e && e.stack || e) });
});
