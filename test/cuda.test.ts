// The CUDA backend behind the same API: every op on CUDA against the float64 reference (SPEC
// section 9) and the CPU op, DeviceTensor round trips and dispose, plan conversions both ways.
// Tests that need a device are skipped where backendInfo().cudaAvailable is false (one test
// prints why); the rest run everywhere: what a machine without a device must answer.
import * as toma from '../lib';
import { loadAddon } from '../lib/native';
import { DTYPES, expectClose, expectTensor, guardInputs, randomTensor, tolerance, values } from './helpers/data';
import { PLAN_CASES, caseShape, planOptions, type PlanCase } from './helpers/cases';
import { ops, referencePlan, type RefPlan } from './reference';

const info = loadAddon().backendInfo();
const onDevice = info.cudaAvailable ? describe : describe.skip;
const withoutDevice = info.cudaAvailable ? test.skip : test;
const CUDA_OPS = ['selectDestinations', 'computePlan', 'merge', 'unmerge', 'attention', 'mergeAttentionUnmerge'];
const cuda = { backend: 'cuda' } as const;
const cpu = { backend: 'cpu' } as const;

function small(label: string, shape = [2, 16, 8], dtype: toma.Dtype = 'float32'): toma.Tensor {
  return randomTensor(label, shape, dtype).t;
}

describe('CUDA backend: what every machine answers', () => {
  test('device tests run only with a device (the reason is printed when they are skipped)', () => {
    if (!info.cudaAvailable) console.log(`cuda.test.ts: CUDA device tests skipped: ${info.reason ?? 'no reason given'}`);
    expect(typeof info.cudaAvailable).toBe('boolean');
  });

  test('backendInfo().cudaOps lists the six ops in a CUDA build, none in a CPU-only build', () => {
    if (info.cudaCompiled) expect([...info.cudaOps].sort()).toEqual([...CUDA_OPS].sort());
    else expect(info.cudaOps).toEqual([]);
  });

  withoutDevice('toDevice rejects with an Error giving the reason', async () => {
    const x = small('toDevice no device');
    await expect(toma.toDevice(x)).rejects.toThrow(Error);
    await expect(toma.toDevice(x)).rejects.toThrow(/^toDevice: CUDA is unavailable: .{5,}/);
    if (info.reason) await expect(toma.toDevice(x)).rejects.toThrow(info.reason);
  });

  withoutDevice('{ backend: "cuda" } on every op rejects with BackendUnavailableError', async () => {
    const x = small('cuda unavailable');
    const plan = await toma.computePlan(x, { grid: [4, 4], ratio: 0.5 });
    const y = await toma.merge(x, plan);
    const runs: Array<[string, () => Promise<unknown>]> = [
      ['selectDestinations', () => toma.selectDestinations(x, { grid: [4, 4], ratio: 0.5, ...cuda })],
      ['computePlan', () => toma.computePlan(x, { grid: [4, 4], ratio: 0.5, ...cuda })],
      ['merge', () => toma.merge(x, plan, cuda)],
      ['unmerge', () => toma.unmerge(y, plan, cuda)],
      ['attention', () => toma.attention(x, x, x, { heads: 2, ...cuda })],
      ['mergeAttentionUnmerge', () => toma.mergeAttentionUnmerge(x, x, x, plan, { heads: 2, ...cuda })],
    ];
    for (const [op, run] of runs) {
      await expect(run()).rejects.toThrow(toma.BackendUnavailableError);
      await expect(run()).rejects.toThrow(new RegExp(`^${op}: `));
    }
  });

  test('toDevice checks its argument like every op: TypeError / RangeError naming it, NaN included', async () => {
    const x = small('toDevice bad');
    await expect(toma.toDevice(42 as unknown as toma.Tensor)).rejects.toThrow(TypeError);
    await expect(toma.toDevice({ ...x, shape: [2, 16] })).rejects.toThrow(/tensor\.shape/);
    await expect(toma.toDevice({ ...x, dtype: 'float16' })).rejects.toThrow(TypeError);
    for (const bad of [NaN, Infinity]) {
      const data = Float32Array.from(x.data);
      data[5] = bad;
      await expect(toma.toDevice({ ...x, data })).rejects.toThrow(RangeError);
      await expect(toma.toDevice({ ...x, data })).rejects.toThrow(/tensor\.data contains NaN or Infinity/);
    }
  });

  test('an object that is not a real DeviceTensor is a TypeError wherever one is accepted', async () => {
    const x = small('fake device tensor');
    const plan = await toma.computePlan(x, { grid: [4, 4], ratio: 0.5 });
    const fake = Object.create(toma.DeviceTensor.prototype) as toma.DeviceTensor;
    const look = { shape: [2, 16, 8], dtype: 'float32', bytes: 1024, disposed: false, toHost: async () => x, dispose() {} };
    for (const f of [fake, look as unknown as toma.DeviceTensor]) {
      await expect(toma.merge(f, plan)).rejects.toThrow(TypeError);
      await expect(toma.merge(f, plan)).rejects.toThrow(/^x[ .]/);
      await expect(toma.attention(x, f, x, { heads: 2 })).rejects.toThrow(/^k[ .]/);
      await expect(toma.computePlan(f, { grid: [4, 4], ratio: 0.5 })).rejects.toThrow(TypeError);
    }
    const proto = toma.DeviceTensor.prototype;
    for (const key of ['shape', 'dtype', 'bytes', 'disposed']) {
      const get = Object.getOwnPropertyDescriptor(proto, key)!.get!;
      expect(() => get.call(x)).toThrow(TypeError);
      expect(() => get.call(x)).toThrow(new RegExp(`DeviceTensor\\.${key}: \`this\` must be a toma\\.DeviceTensor`));
    }
    expect(() => proto.dispose.call(x)).toThrow(TypeError);
    expect(() => proto.toHost.call(x)).toThrow(TypeError);
    expect(() => new (toma.DeviceTensor as unknown as new () => unknown)()).toThrow(/toma\.toDevice/);
  });

  test('a plan computed on the CPU lives on the host: plan.device is false', async () => {
    const plan = await toma.computePlan(small('host plan'), { grid: [4, 4], ratio: 0.5, ...cpu });
    expect(plan.device).toBe(false);
    expect(plan.bytes).toBeGreaterThan(0);
    const get = Object.getOwnPropertyDescriptor(toma.Plan.prototype, 'device')!.get!;
    expect(() => get.call({})).toThrow(TypeError);
  });

  test('the CPU path is unchanged: merge equals M x from plan.matrices(), default and explicit cpu alike', async () => {
    const [B, H, W, C, P] = [2, 5, 7, 4, 3];
    const { t, x } = randomTensor('cpu unchanged', [B, P + H * W, C]);
    const o = { grid: [H, W] as [number, number], ratio: 0.5, prefix: P, region: { kind: 'tile', th: 3, tw: 2 } as const };
    const plan = await toma.computePlan(t, { ...o, ...cpu });
    const y = await toma.merge(t, plan, cpu);
    const want = new Float64Array(B * (P + plan.K) * C);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < P * C; i++) want[b * (P + plan.K) * C + i] = x[b * (P + H * W) * C + i];
      let j0 = 0;
      for (const m of plan.matrices(b)) {
        const n = m.tokens.length;
        for (let d = 0; d < m.destinations.length; d++, j0++)
          for (let c = 0; c < C; c++) {
            let s = 0;
            for (let s0 = 0; s0 < n; s0++) s += m.M[d * n + s0] * x[(b * (P + H * W) + P + m.tokens[s0]) * C + c];
            want[(b * (P + plan.K) + P + j0) * C + c] = s;
          }
      }
    }
    expectClose(values(y), want, 1e-5, 'cpu merge');
    if (!info.cudaAvailable) expect(Array.from((await toma.merge(t, plan)).data)).toEqual(Array.from(y.data));
  });
});

/** Every region's M and U against the reference; the matrices are float32 whatever the input dtype. */
function expectMatrices(plan: toma.Plan, ref: RefPlan, label: string): void {
  for (let b = 0; b < ref.B; b++) {
    plan.matrices(b).forEach((m, i) => {
      const r = ref.regions[b][i];
      expect(Array.from(m.destinations)).toEqual(r.destinations);
      expectClose(m.M, r.M, 1e-5, `${label} b${b} region ${i} M`);
      expectClose(m.U, r.U, 1e-5, `${label} b${b} region ${i} U`);
    });
  }
}

async function expectDeviceTensor(d: toma.DeviceTensor, shape: number[], dtype: toma.Dtype): Promise<toma.Tensor> {
  expect(d).toBeInstanceOf(toma.DeviceTensor);
  expect(d.shape).toEqual(shape);
  expect(d.dtype).toBe(dtype);
  const host = await d.toHost();
  expectTensor(host, shape, dtype);
  return host;
}

onDevice('CUDA ops match the float64 reference and the CPU ops', () => {
  test.each(PLAN_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c: PlanCase) => {
    const shape = caseShape(c);
    const h = randomTensor(`cuda ${c.name}`, shape, c.dtype, 1, c.mean ?? 0);
    const o = planOptions(c);
    const ref = referencePlan(h.x, shape, o);
    const lin = tolerance(c.dtype, 'linear');
    const att = tolerance(c.dtype, 'attention');
    const check = guardInputs(h.t);

    const dest = await toma.selectDestinations(h.t, { ...o, ...cuda });
    expect(Array.from(dest)).toEqual(Array.from(ref.destinations));
    expect(Array.from(dest)).toEqual(Array.from(await toma.selectDestinations(h.t, { ...o, ...cpu })));

    const plan = await toma.computePlan(h.t, { ...o, ...cuda });
    expect(plan.device).toBe(true);
    expect([plan.K, plan.B, plan.N, plan.prefix, plan.hard]).toEqual([ref.K, c.B, c.H * c.W, c.P, c.tau === Infinity]);
    expect(plan.grid).toEqual([c.H, c.W]);
    expect(Array.from(plan.destinations)).toEqual(Array.from(ref.destinations));
    expectMatrices(plan, ref, `${c.name} cuda plan`);

    const y = await toma.merge(h.t, plan, cuda);
    expectTensor(y, [c.B, c.P + ref.K, c.C], c.dtype);
    expectClose(values(y), ops.merge(h.x, c.C, ref).x, lin, `${c.name} cuda merge`);
    const yc = await toma.merge(h.t, plan, cpu);
    expectClose(values(y), values(yc), 2 * lin, `${c.name} cuda merge vs cpu`);

    const m = randomTensor(`cuda unmerge ${c.name}`, [c.B, c.P + ref.K, c.C], c.dtype);
    const u = await toma.unmerge(m.t, plan, cuda);
    expectTensor(u, shape, c.dtype);
    expectClose(values(u), ops.unmerge(m.x, c.C, ref).x, lin, `${c.name} cuda unmerge`);

    const heads = c.C % 4 === 0 ? 4 : 2;
    const [q, k, v] = ['q', 'k', 'v'].map((n) => randomTensor(`cuda ${n} ${c.name}`, shape, c.dtype));
    const a = await toma.attention(q.t, k.t, v.t, { heads, ...cuda });
    expectClose(values(a), ops.attention(q.x, k.x, v.x, c.B, shape[1], shape[1], c.C, heads), att, `${c.name} cuda attention`);

    for (const extra of [{}, { mergeQueries: false }, { proportional: true }]) {
      const r = await toma.mergeAttentionUnmerge(q.t, k.t, v.t, plan, { heads, ...extra, ...cuda });
      expectTensor(r, shape, c.dtype);
      const want = ops.mergeAttentionUnmerge(q.x, k.x, v.x, c.C, ref, heads, extra);
      expectClose(values(r), want, att, `${c.name} cuda mergeAttentionUnmerge ${JSON.stringify(extra)}`);
    }
    check();
  });

  test.each(DTYPES)('weight-only recompute with fixed destinations (%s)', async (dtype) => {
    const [B, H, W, C] = [2, 9, 7, 16];
    const o = { grid: [H, W] as [number, number], ratio: 0.5, region: { kind: 'tile', th: 3, tw: 4 } as const };
    const first = randomTensor(`cuda dest first ${dtype}`, [B, H * W, C], dtype);
    const next = randomTensor(`cuda dest next ${dtype}`, [B, H * W, C], dtype);
    const destinations = (await toma.computePlan(first.t, { ...o, ...cuda })).destinations;
    const plan = await toma.computePlan(next.t, { ...o, destinations, ...cuda });
    expect(Array.from(plan.destinations)).toEqual(Array.from(destinations));
    expectMatrices(plan, referencePlan(next.x, [B, H * W, C], { ...o, destinations }), `dest ${dtype}`);
  });
});

onDevice('DeviceTensor', () => {
  test.each(DTYPES)('toDevice / toHost round trip is exact (%s)', async (dtype) => {
    const x = small(`round trip ${dtype}`, [3, 17, 5], dtype);
    const check = guardInputs(x);
    const d = await toma.toDevice(x);
    check();
    expect(d.bytes).toBe(x.data.byteLength);
    expect(d.disposed).toBe(false);
    const back = await expectDeviceTensor(d, [3, 17, 5], dtype);
    expect(Array.from(back.data)).toEqual(Array.from(x.data));
    d.dispose();
  });

  test('dispose frees now, is idempotent, and a disposed tensor is a TypeError naming the argument', async () => {
    const x = small('dispose');
    const plan = await toma.computePlan(x, { grid: [4, 4], ratio: 0.5 });
    const d = await toma.toDevice(x);
    d.dispose();
    d.dispose();
    expect(d.disposed).toBe(true);
    expect(d.bytes).toBe(x.data.byteLength);
    await expect(d.toHost()).rejects.toThrow(TypeError);
    await expect(toma.merge(d, plan)).rejects.toThrow(/^x is a disposed toma\.DeviceTensor/);
    await expect(toma.attention(x, d, x, { heads: 2 })).rejects.toThrow(/^k is a disposed toma\.DeviceTensor/);
  });

  test('device memory is reported to V8 once and returned once', async () => {
    const x = small('external memory', [4, 1024, 256]); // 4 MiB
    const before = process.memoryUsage().external;
    const d = await toma.toDevice(x);
    const held = process.memoryUsage().external - before;
    expect(held).toBeGreaterThanOrEqual(d.bytes);
    d.dispose();
    d.dispose();
    expect(process.memoryUsage().external - before).toBeLessThan(held - d.bytes / 2);
  });

  test('an op running on a tensor keeps it alive through dispose()', async () => {
    const x = small('dispose in flight', [2, 64, 32]);
    const plan = await toma.computePlan(x, { grid: [8, 8], ratio: 0.5 });
    const d = await toma.toDevice(x);
    const pending = toma.merge(d, plan);
    d.dispose();
    // Same-size allocations right after: a freed buffer would be reused and overwritten by these.
    const junk = await Promise.all([1, 2, 3].map((i) => toma.toDevice(small(`dispose junk ${i}`, [2, 64, 32]))));
    const y = await pending;
    junk.forEach((j) => j.dispose());
    const want = await toma.merge(x, plan, cpu);
    expectClose(values(await y.toHost()), values(want), 2 * tolerance('float32', 'linear'), 'merge across dispose');
  });

  test('ops on DeviceTensors return DeviceTensors; host inputs return host tensors; mixed inputs are staged', async () => {
    const [B, H, W, C, P] = [2, 6, 9, 16, 5];
    const shape = [B, P + H * W, C];
    const [q, k, v] = ['q', 'k', 'v'].map((n) => small(`device ops ${n}`, shape));
    const [dq, dk, dv] = await Promise.all([q, k, v].map((t) => toma.toDevice(t)));
    const o = { grid: [H, W] as [number, number], ratio: 0.75, prefix: P };
    const plan = await toma.computePlan(dq, o);
    expect(plan.device).toBe(true);
    const lin = 2 * tolerance('float32', 'linear');
    const att = 2 * tolerance('float32', 'attention');

    const y = await toma.merge(dq, plan);
    const yh = await expectDeviceTensor(y, [B, P + plan.K, C], 'float32');
    expectClose(values(yh), values(await toma.merge(q, plan, cpu)), lin, 'device merge');
    const u = await toma.unmerge(y, plan);
    expectClose(values(await expectDeviceTensor(u, shape, 'float32')), values(await toma.unmerge(yh, plan, cpu)), lin, 'device unmerge');
    const a = await toma.attention(dq, k, dv, { heads: 4 });
    expectClose(values(await expectDeviceTensor(a, shape, 'float32')), values(await toma.attention(q, k, v, { heads: 4, ...cpu })), att, 'mixed attention');
    const r = await toma.mergeAttentionUnmerge(dq, dk, dv, plan, { heads: 4 });
    const rc = await toma.mergeAttentionUnmerge(q, k, v, plan, { heads: 4, ...cpu });
    expectClose(values(await expectDeviceTensor(r, shape, 'float32')), values(rc), att, 'device mergeAttentionUnmerge');
    const hostMain = await toma.attention(q, dk, dv, { heads: 4 });
    expect(hostMain).not.toBeInstanceOf(toma.DeviceTensor);
    expect(Array.from(await toma.selectDestinations(dq, o))).toEqual(Array.from(plan.destinations));
    for (const t of [dq, dk, dv, y, u, a, r]) t.dispose();
  });

  test("a DeviceTensor with { backend: 'cpu' } is a TypeError saying what to do; TOMA_BACKEND=cpu does not apply to it", async () => {
    const x = small('device on cpu');
    const plan = await toma.computePlan(x, { grid: [4, 4], ratio: 0.5, ...cpu });
    const d = await toma.toDevice(x);
    await expect(toma.merge(d, plan, cpu)).rejects.toThrow(TypeError);
    await expect(toma.merge(d, plan, cpu)).rejects.toThrow(/x is a toma\.DeviceTensor but options\.backend is 'cpu': call x\.toHost\(\)/);
    const saved = process.env.TOMA_BACKEND;
    process.env.TOMA_BACKEND = 'cpu';
    try {
      expect(await toma.merge(d, plan)).toBeInstanceOf(toma.DeviceTensor);
    } finally {
      if (saved === undefined) delete process.env.TOMA_BACKEND;
      else process.env.TOMA_BACKEND = saved;
    }
    d.dispose();
  });

  test('host inputs staged for CUDA are checked for NaN like the CPU path', async () => {
    const x = small('cuda nan');
    const plan = await toma.computePlan(x, { grid: [4, 4], ratio: 0.5 });
    const data = Float32Array.from(x.data);
    data[7] = NaN;
    const bad = { ...x, data };
    await expect(toma.merge(bad, plan, cuda)).rejects.toThrow(/x\.data contains NaN or Infinity/);
    await expect(toma.computePlan(bad, { grid: [4, 4], ratio: 0.5, ...cuda })).rejects.toThrow(RangeError);
    await expect(toma.attention(x, x, bad, { heads: 2, ...cuda })).rejects.toThrow(/v\.data contains NaN/);
  });
});

onDevice('plans move between host and device once', () => {
  test('a host plan used on CUDA is uploaded once and kept; results match', async () => {
    const x = small('upload', [2, 64, 16]);
    const plan = await toma.computePlan(x, { grid: [8, 8], ratio: 0.5, ...cpu });
    const hostBytes = plan.bytes;
    expect(plan.device).toBe(false);
    const ys = await Promise.all(Array.from({ length: 8 }, () => toma.merge(x, plan, cuda)));
    expect(plan.device).toBe(true);
    expect(plan.bytes).toBeGreaterThan(hostBytes);
    const want = await toma.merge(x, plan, cpu);
    for (const y of ys) expectClose(values(y), values(want), 2 * tolerance('float32', 'linear'), 'uploaded plan merge');
  });

  test('a device plan used on the CPU is downloaded once and kept; results match', async () => {
    const x = small('download', [2, 64, 16]);
    const plan = await toma.computePlan(x, { grid: [8, 8], ratio: 0.5, ...cuda });
    const deviceBytes = plan.bytes;
    expect(plan.device).toBe(true);
    const ys = await Promise.all(Array.from({ length: 8 }, () => toma.merge(x, plan, cpu)));
    expect(plan.bytes).toBeGreaterThan(deviceBytes);
    const want = await toma.merge(x, plan, cuda);
    for (const y of ys) expectClose(values(y), values(want), 2 * tolerance('float32', 'linear'), 'downloaded plan merge');
  });

  test('a tomesd baseline plan runs on CUDA through an upload', async () => {
    const x = small('tomesd cuda', [1, 64, 8]);
    const plan = await toma.tomesdPlan(x, { grid: [8, 8], ratio: 0.5, seed: 3 });
    const want = await toma.merge(x, plan, cpu);
    expectClose(values(await toma.merge(x, plan, cuda)), values(want), 2 * tolerance('float32', 'linear'), 'tomesd merge');
  });
});
