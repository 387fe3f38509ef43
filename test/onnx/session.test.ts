// toma.onnx.createSession: segment mode end to end in onnxruntime-node, against the original model
// (ratio 0, or every block at ratio 0) and against toma applied by hand on the original graph
// (ratio 0.5); the reuse schedule across run() calls; errors and unpatchable models; the
// dispatch to the standard-ops mode.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import * as toma from '../../lib';
import type { SegmentSessionStats } from '../../lib/onnx/segments';
import { ALL_FIXTURES, FIXTURES, PPOCR, ROOT, fixture, modelBytes, relErr, seededFeeds, tmpDir } from './helpers';
import { composeJointByHand, composeSelfByHand, f32, tinyAttentionModel } from './segments-helpers';


/** This file tests segment mode: createSession with mode 'segments' unless a test names another. */
const segmentSession: typeof toma.onnx.createSession = (file, options, ortOptions) =>
  toma.onnx.createSession(file, options === null || typeof options !== 'object' ? options : { mode: 'segments', ...options }, ortOptions);

const GRID: Record<string, [number, number]> = { 'flux_joint.onnx': [32, 32], 'flux_joint_mha.onnx': [32, 32] };
const dir = tmpDir('seg');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function original(file: string, feeds?: Record<string, ort.Tensor>, overrides: Record<string, number[]> = {}) {
  const s = await ort.InferenceSession.create(file);
  const f = feeds ?? seededFeeds(s, 7, 2, overrides);
  const out = await s.run(f);
  const names = [...s.outputNames];
  await s.release();
  return { feeds: f, out, names };
}

const quiet = { onWarning: () => undefined };

describe('ratio 0, and every block at ratio 0, reproduce the original model', () => {
  test.each(ALL_FIXTURES)('%s', async (name) => {
    const file = fixture(name);
    const ref = await original(file);
    const grid = GRID[name];
    // ratio 0: the model runs as exported, one session
    const s0 = await segmentSession(file, { ratio: 0, grid, ...quiet });
    const o0 = await s0.run(ref.feeds);
    expect(s0.stats()).toMatchObject({ mode: 'segments', patchedBlocks: [], segments: 1 });
    for (const k of ref.names) expect(relErr(f32(ref.out[k]), f32(o0[k]))).toBeLessThanOrEqual(1e-6);
    await s0.release();
    // ratio () => 0: every self/joint block is cut; toma's dense attention runs between the pieces
    const s1 = await segmentSession(file, { ratio: () => 0, grid, ...quiet });
    const o1 = await s1.run(ref.feeds);
    const st = s1.stats() as SegmentSessionStats;
    const selfish = st.blocks.filter((b) => b.kind !== 'cross');
    expect(st.patchedBlocks).toEqual(selfish.map((b) => b.name));
    expect(st.patchedBlocks.length).toBeGreaterThan(0);
    expect(st.segments).toBe(st.patchedBlocks.length + 1);
    expect(st.processor).toMatchObject({ blocksDense: st.patchedBlocks.length, blocksMerged: 0 });
    expect(s1.outputNames).toEqual(ref.names);
    for (const k of ref.names) expect(relErr(f32(ref.out[k]), f32(o1[k]))).toBeLessThanOrEqual(1e-4);
    await s1.release();
  });

  test('PP-OCRv4 with grid [1, 40] (input width 320)', async () => {
    const ref = await original(PPOCR, undefined, { x: [1, 3, 48, 320] });
    const s = await segmentSession(PPOCR, { ratio: () => 0, grid: [1, 40] });
    const out = await s.run(ref.feeds);
    expect(s.stats()).toMatchObject({ patchedBlocks: ['p2o.Softmax.0', 'p2o.Softmax.1'], segments: 3 });
    expect(relErr(f32(ref.out[ref.names[0]]), f32(out[ref.names[0]]))).toBeLessThanOrEqual(1e-4);
    await s.release();
  });
});

describe('ratio 0.5 equals toma applied by hand on the original graph', () => {
  test.each(['sd_transformer_32x32.onnx', 'sd_transformer_64x64.onnx', 'sd_transformer_64x64_static.onnx', 'sd_transformer_32x32_mha.onnx', 'sd_transformer_32x32_ext.onnx'])(
    '%s',
    async (name) => {
      const file = fixture(name);
      const ref = await original(file);
      // the external-data fixture holds the 32x32 model's weights: compose on the in-file copy
      const byHand = await composeSelfByHand(name.endsWith('_ext.onnx') ? fixture('sd_transformer_32x32.onnx') : file, ref.feeds, { ratio: 0.5 });
      const s = await segmentSession(file, { ratio: 0.5 });
      const out = await s.run(ref.feeds);
      const st = s.stats();
      expect(st.processor).toMatchObject({ plansComputed: 1, plansReused: 1, blocksMerged: 2 });
      expect(st.processor!.meanRatio).toBeCloseTo(0.5, 6);
      const err = relErr(f32(byHand.out_sample), f32(out.out_sample));
      expect(err).toBeLessThanOrEqual(1e-5);
      // and merging changed the result (random weights: a bounded, visible change)
      const vsOriginal = relErr(f32(ref.out.out_sample), f32(out.out_sample));
      expect(vsOriginal).toBeGreaterThan(1e-3);
      expect(vsOriginal).toBeLessThan(0.5);
      await s.release();
    },
  );

  test('Flux joint block: pre-RoPE merge, destination positions, 512 text tokens as the prefix', async () => {
    for (const name of ['flux_joint.onnx', 'flux_joint_mha.onnx']) {
      const file = fixture(name);
      const ref = await original(file);
      const s = await segmentSession(file, { ratio: 0.5, grid: [32, 32], dense: [] });
      const out = await s.run(ref.feeds);
      const st = s.stats() as SegmentSessionStats;
      expect(st.blocks).toEqual([expect.objectContaining({ kind: 'joint', status: 'patched', rope: 'destination', grid: [32, 32], afterPiece: 0 })]);
      expect(st.warnings).toEqual([]);
      expect(st.processor).toMatchObject({ plansComputed: 1, blocksMerged: 1 });
      const byHand = await composeJointByHand(file, ref.feeds, { ratio: 0.5, grid: [32, 32] });
      for (const k of ref.names) expect(relErr(f32(byHand[k]), f32(out[k]))).toBeLessThanOrEqual(1e-5);
      await s.release();

      // the deviation: merging already-rotated q/k is a different (documented) result
      const warnings: string[] = [];
      const r = await segmentSession(file, { ratio: 0.5, grid: [32, 32], dense: [], rope: 'rotated', onWarning: (m) => warnings.push(m) });
      const rout = await r.run(ref.feeds);
      expect((r.stats() as SegmentSessionStats).blocks[0].rope).toBe('rotated');
      expect(warnings).toEqual([]); // asked for
      const rotated = await composeJointByHand(file, ref.feeds, { ratio: 0.5, grid: [32, 32], rotated: true });
      for (const k of ref.names) {
        expect(relErr(f32(rotated[k]), f32(rout[k]))).toBeLessThanOrEqual(1e-5);
        expect(relErr(f32(out[k]), f32(rout[k]))).toBeGreaterThan(1e-4);
      }
      await r.release();
    }
  });

  test('PP-OCRv4 at 0.5 with grid [1, 40]: dense by default (40 tokens cannot pay); with dense: [] patched, bounded change of the class probabilities', async () => {
    const ref = await original(PPOCR, undefined, { x: [1, 3, 48, 320] });
    const byDefault = await segmentSession(PPOCR, { ratio: 0.5, grid: [1, 40] });
    expect((byDefault.stats() as SegmentSessionStats).blocks.map((b) => b.status)).toEqual(['dense', 'dense']);
    expect((byDefault.stats() as SegmentSessionStats).blocks[0].reason).toMatch(/dense by default: 40 image tokens .* too little attention for merging to pay/);
    await byDefault.release();
    const s = await segmentSession(PPOCR, { ratio: 0.5, grid: [1, 40], dense: [] });
    const out = await s.run(ref.feeds);
    const e = relErr(f32(ref.out[ref.names[0]]), f32(out[ref.names[0]]));
    expect(e).toBeGreaterThan(0);
    expect(e).toBeLessThan(0.1);
    expect(s.stats().processor!.blocksMerged).toBe(2);
    await s.release();
  });
});

describe('reuse schedule across run() calls', () => {
  test('destinations every 10 steps, weights every 5, shared by the group; beginImage restarts', async () => {
    const file = fixture('sd_transformer_32x32.onnx');
    const ref = await original(file);
    const s = await segmentSession(file, { ratio: 0.5 });
    for (let i = 0; i < 11; i++) await s.run(ref.feeds);
    // steps 0 and 10 select; step 5 re-weighs; the second block reuses every time
    expect(s.stats()).toMatchObject({ step: 11, runs: 11, processor: { plansComputed: 2, weightsRecomputed: 1, plansReused: 19, blocksMerged: 22 } });
    s.beginImage();
    expect(s.stats().step).toBe(0);
    const first = await s.run(ref.feeds);
    expect(s.stats()).toMatchObject({ step: 1, runs: 12, processor: { plansComputed: 3, images: 1 } });
    // a fresh session's first step gives the same output as the first step after beginImage
    const t = await segmentSession(file, { ratio: 0.5 });
    const again = await t.run(ref.feeds);
    expect(relErr(f32(again.out_sample), f32(first.out_sample))).toBe(0);
    const st = s.stats();
    expect(st.ortMs).toBeGreaterThan(0);
    expect(st.tomaMs).toBeGreaterThan(0);
    expect(st.totalMs).toBeGreaterThanOrEqual(st.ortMs + st.tomaMs - 1);
    const pending = s.run(ref.feeds);
    await expect(s.run(ref.feeds)).rejects.toThrow(/another run\(\) of this session is in progress/);
    await pending;
    expect(s.stats().step).toBe(2);
    await s.release();
    await t.release();
    await expect(s.run(ref.feeds)).rejects.toThrow(/after release/);
  });

  test('dense blocks stay inside pieces; the default keeps dense only blocks where merging cannot pay (not a first group)', async () => {
    const file = fixture('sd_transformer_32x32.onnx');
    const ref = await original(file);
    const b0 = '/transformer_blocks.0/attn1';
    const b1 = '/transformer_blocks.1/attn1';
    const d = await segmentSession(file, { ratio: 0.5, dense: [b0] });
    await d.run(ref.feeds);
    expect(d.stats()).toMatchObject({ patchedBlocks: [b1], segments: 2 });
    expect((d.stats() as SegmentSessionStats).blocks[0]).toMatchObject({ status: 'dense', reason: 'dense (options.dense)' });
    // two groups (by name here): 1024 tokens pay, so both merge by default; SPEC 7's first-group
    // rule is not the ONNX sessions' default (it would keep a UNet's largest blocks dense)
    const group = (b: string) => (b === b0 ? 'first' : 'second');
    const g = await segmentSession(file, { ratio: 0.5, group });
    expect(g.stats()).toMatchObject({ patchedBlocks: [b0, b1], segments: 3 });
    const all = await segmentSession(file, { ratio: 0.5, group, dense: [] });
    expect(all.stats()).toMatchObject({ patchedBlocks: [b0, b1], segments: 3 });
    await all.run(ref.feeds);
    expect(all.stats().processor).toMatchObject({ plansComputed: 2, plansReused: 0 });
    // every block dense: no cut at all, the original outputs
    const none = await segmentSession(file, { ratio: 0.5, dense: () => true });
    const o = await none.run(ref.feeds);
    expect(none.stats()).toMatchObject({ patchedBlocks: [], segments: 1 });
    expect(relErr(f32(ref.out.out_sample), f32(o.out_sample))).toBe(0);
    for (const s of [d, g, all, none]) await s.release();
  });
});

describe('errors and models it cannot patch', () => {
  test('PP-OCRv4 (dynamic width) without a grid: inferred from the input shape at run(); a grid that does not fit the tokens: a RangeError at run()', async () => {
    const ref = await original(PPOCR, undefined, { x: [1, 3, 48, 320] });
    const inferred = await segmentSession(PPOCR, { ratio: 0.5, dense: [] });
    expect(inferred.stats().patchedBlocks).toEqual([]); // nothing is known before the shapes are
    const merged = await inferred.run(ref.feeds);
    expect((inferred.stats() as SegmentSessionStats).blocks.map((b) => [b.status, b.grid])).toEqual([
      ['patched', [1, 40]],
      ['patched', [1, 40]],
    ]);
    expect(relErr(f32(ref.out[ref.names[0]]), f32(merged[ref.names[0]]))).toBeGreaterThan(0);
    await inferred.release();
    const s = await segmentSession(PPOCR, { ratio: 0.5, grid: [1, 30], dense: [] });
    await expect(s.run(ref.feeds)).rejects.toThrow(RangeError);
    await expect(s.run(ref.feeds)).rejects.toThrow(/block 'p2o\.Softmax\.0': 40 image tokens do not form the grid \[1,30\] \(options\.grid\)/);
    await s.release();
    // a graph-known grid that disagrees with the tokens is refused at creation
    await expect(segmentSession(fixture('flux_joint.onnx'), { ratio: 0.5, grid: [16, 16], dense: [] })).rejects.toThrow(/options\.grid: \[16,16\] has 256 tokens but block '\/Softmax' has 1024/);
  });

  test('bad options and feeds', async () => {
    const file = fixture('sd_transformer_32x32.onnx');
    await expect(segmentSession(file, { ratio: 1 })).rejects.toThrow(RangeError);
    await expect(segmentSession(file, { ratio: 0.5, mode: 'fast' as never })).rejects.toThrow(/options\.mode must be 'auto', 'segments' or 'standard-ops'/);
    await expect(segmentSession(file, { ratio: 0.5, grid: [0, 4] })).rejects.toThrow(/options\.grid must be \[H, W\]/);
    await expect(segmentSession(file, { ratio: 0.5, colour: 1 } as never)).rejects.toThrow(/options\.colour is not a processor option/);
    await expect(segmentSession(file, null as never)).rejects.toThrow(TypeError);
    await expect(segmentSession('', { ratio: 0.5 })).rejects.toThrow(/path/);
    await expect(segmentSession(path.join(dir, 'missing.onnx'), { ratio: 0.5 })).rejects.toThrow(/ENOENT/);
    const s = await segmentSession(file, { ratio: 0.5 });
    const { feeds } = await original(file);
    await expect(s.run({ sample: feeds.sample })).rejects.toThrow(/input 'encoder_hidden_states' is missing/);
    await expect(s.run({ ...feeds, extra: feeds.sample })).rejects.toThrow(/'extra' is not an input/);
    await s.release();
  });

  test('an internal attention tensor read outside the core: the block is left alone, with a warning; requirePatched rejects', async () => {
    const file = path.join(dir, 'probs_out.onnx');
    fs.writeFileSync(file, modelBytes(tinyAttentionModel({ probsOut: true })));
    const warnings: string[] = [];
    const s = await segmentSession(file, { ratio: 0.5, grid: [4, 4], onWarning: (m) => warnings.push(m) });
    const st = s.stats() as SegmentSessionStats;
    expect(st.patchedBlocks).toEqual([]);
    expect(st.blocks[0]).toMatchObject({ status: 'unpatched', reason: expect.stringMatching(/graph output/) });
    expect(warnings).toEqual([expect.stringMatching(/no attention block .* is patched, the model runs as exported: '\/blk\/attn1': .*graph output/)]);
    expect(st.warnings).toEqual(warnings);
    const ref = await original(file);
    const out = await s.run(ref.feeds);
    for (const k of ref.names) expect(relErr(f32(ref.out[k]), f32(out[k]))).toBe(0);
    await s.release();
    await expect(segmentSession(file, { ratio: 0.5, grid: [4, 4], requirePatched: true, ...quiet })).rejects.toThrow(/no attention block/);
  });

  test('a model without attention runs as exported (warning by process.emitWarning by default)', async () => {
    const file = path.join(dir, 'tiny_ok.onnx');
    fs.writeFileSync(file, modelBytes(tinyAttentionModel()));
    // the tiny model itself is patchable with a grid: [4, 4] tokens, 2 heads
    const ref = await original(file);
    const s = await segmentSession(file, { ratio: () => 0, grid: [4, 4] });
    expect(s.stats().patchedBlocks).toEqual(['/blk/attn1']);
    expect(relErr(f32(ref.out.y), f32((await s.run(ref.feeds)).y))).toBeLessThanOrEqual(1e-5);
    await s.release();
    const spy = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const noAttn = path.join(dir, 'no_attention.onnx');
      const m = tinyAttentionModel();
      const g = m.graph!;
      g.node = g.node.filter((n) => n.name.includes('norm1'));
      g.output = [{ ...g.output[0], name: 'n' }];
      g.initializer = g.initializer.filter((t) => t.name.startsWith('ln_'));
      fs.writeFileSync(noAttn, modelBytes(m));
      const u = await segmentSession(noAttn, { ratio: 0.5 });
      expect(u.stats()).toMatchObject({ patchedBlocks: [], segments: 1 });
      expect(spy).toHaveBeenCalledWith(expect.stringMatching(/no attention block was found/), { code: 'TOMA_SEGMENTS' });
      await u.release();
    } finally {
      spy.mockRestore();
    }
  });
});

describe('files', () => {
  const hashes = () => {
    const h: Record<string, string> = {};
    for (const f of fs.readdirSync(FIXTURES)) h[f] = createHash('sha256').update(fs.readFileSync(path.join(FIXTURES, f))).digest('hex');
    return h;
  };

  test('inputs are never written; pieces go to a temp dir (or beside external data) and are removed', async () => {
    const before = hashes();
    const tmp = path.join(dir, 'pieces');
    fs.mkdirSync(tmp);
    for (const name of ['sd_transformer_32x32.onnx', 'sd_transformer_32x32_ext.onnx']) {
      const s = await segmentSession(fixture(name), { ratio: 0.5, tmpDir: tmp });
      expect(s.stats().segments).toBe(3);
      const { feeds } = await original(fixture(name));
      await s.run(feeds);
      await s.release();
    }
    expect(hashes()).toEqual(before); // same files, same bytes: nothing left beside the fixtures
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('onnxruntime-node is not loaded when toma is imported', () => {
    const code = "require('./lib'); process.stdout.write(String(Object.keys(require.cache).some((k) => k.includes('onnxruntime'))))";
    const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', code], { cwd: ROOT, encoding: 'utf8' });
    expect(out.trim()).toBe('false');
  });
});

describe("mode: 'standard-ops'", () => {
  const available = fs.existsSync(path.join(ROOT, 'lib', 'onnx', 'standard-ops.ts'));
  test('dispatches to createStandardOpsSession (or says clearly that the mode is missing)', async () => {
    const file = fixture('sd_transformer_32x32.onnx');
    if (!available) {
      await expect(segmentSession(file, { ratio: 0.5, mode: 'standard-ops' })).rejects.toThrow(/'standard-ops' is not available/);
      return;
    }
    const s = await segmentSession(file, { ratio: 0.5, mode: 'standard-ops' });
    expect(s.stats().mode).toBe('standard-ops');
    const { feeds, names } = await original(file);
    const out = await s.run(feeds);
    expect(Object.keys(out)).toEqual(names);
    await s.release();
  });
});
