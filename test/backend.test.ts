import * as toma from '../lib';
import { addonCandidates, loadAddon } from '../lib/native';

describe('loader and backend', () => {
  const saved = process.env.TOMA_BACKEND;
  afterEach(() => {
    if (saved === undefined) delete process.env.TOMA_BACKEND;
    else process.env.TOMA_BACKEND = saved;
  });

  test('the addon loads from prebuilds/ first, then build/', () => {
    const list = addonCandidates();
    const pre = list.findIndex((p) => p.includes(`prebuilds/${process.platform}-${process.arch}`));
    const rel = list.findIndex((p) => p.includes('build/Release'));
    expect(pre).toBeGreaterThanOrEqual(0);
    expect(rel).toBeGreaterThan(pre);
    expect(toma.addonPath()).toMatch(/toma\.node$/);
  });

  test('backend() reports cpu with a reason, or cuda with a device', () => {
    delete process.env.TOMA_BACKEND;
    const b = toma.backend();
    const info = loadAddon().backendInfo();
    expect(typeof b.cudaCompiled).toBe('boolean');
    if (info.cudaAvailable) {
      expect(b.name).toBe('cuda');
      expect(b.device).toEqual(expect.any(String));
    } else {
      expect(b.name).toBe('cpu');
      expect(b.reason).toEqual(expect.any(String));
      expect(b.reason!.length).toBeGreaterThan(5);
    }
  });

  test('TOMA_BACKEND=cpu forces the CPU', () => {
    process.env.TOMA_BACKEND = 'cpu';
    const b = toma.backend();
    expect(b.name).toBe('cpu');
    expect(b.reason).toBe('TOMA_BACKEND=cpu');
  });

  test('TOMA_BACKEND=cuda without a device is a clear error', () => {
    process.env.TOMA_BACKEND = 'cuda';
    if (loadAddon().backendInfo().cudaAvailable) {
      expect(toma.backend().name).toBe('cuda');
    } else {
      expect(() => toma.backend()).toThrow(toma.BackendUnavailableError);
      expect(() => toma.backend()).toThrow(/TOMA_BACKEND=cuda, but CUDA is unavailable: /);
    }
  });

  test('an unknown TOMA_BACKEND is a RangeError', () => {
    process.env.TOMA_BACKEND = 'tpu';
    expect(() => toma.backend()).toThrow(RangeError);
    expect(() => toma.backend()).toThrow(/TOMA_BACKEND must be 'cpu' or 'cuda', got 'tpu'/);
  });

  test('an op asked to run on a missing CUDA backend rejects', async () => {
    if (loadAddon().backendInfo().cudaAvailable) return;
    const x = { data: new Float32Array(16 * 4).map(() => Math.random()), shape: [1, 16, 4], dtype: 'float32' as const };
    await expect(toma.computePlan(x, { grid: [4, 4], ratio: 0.5, backend: 'cuda' })).rejects.toThrow(
      toma.BackendUnavailableError,
    );
  });

  test('native typed arrays and errors pass instanceof in the test realm', async () => {
    const x = { data: new Float32Array(16 * 4).map(() => Math.random() - 0.5), shape: [1, 16, 4], dtype: 'float32' as const };
    const d = await toma.selectDestinations(x, { grid: [4, 4], ratio: 0.5 });
    expect(d).toBeInstanceOf(Int32Array);
    const plan = await toma.computePlan(x, { grid: [4, 4], ratio: 0.5 });
    expect(plan).toBeInstanceOf(toma.Plan);
    const y = await toma.merge(x, plan);
    expect(y.data).toBeInstanceOf(Float32Array);
    await expect(toma.merge({ ...x, shape: [1, 15, 4] }, plan)).rejects.toThrow(RangeError);
  });
});
