// The command line: `toma patch in.onnx out.onnx --ratio 0.5 [--mode standard-ops] [--grid HxW]`
// prints the matcher's table per block and writes the model patched by toma.onnx.patchModel.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { buildProgram } from '../lib/cli';
import { runInfo } from '../lib/cli/info';
import { formatBlocks, loadPatchModel, parseGrid, parseShapes, runInspect, runPatch } from '../lib/cli/patch';
import { inspect } from '../lib/onnx/inspect';
import { PPOCR, ROOT, fixture, tmpDir } from './onnx/helpers';

const dir = tmpDir('cli');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function sink() {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return { stream, text: () => text };
}

let patchAvailable = true;
try {
  loadPatchModel();
} catch {
  patchAvailable = false;
}

describe('toma patch', () => {
  test('is registered with its options', () => {
    const cmd = buildProgram().commands.find((c) => c.name() === 'patch');
    expect(cmd).toBeDefined();
    expect(cmd!.options.map((o) => o.long)).toEqual(['--ratio', '--mode', '--grid', '--shapes']);
    expect(cmd!.registeredArguments.map((a) => a.name())).toEqual(['in', 'out']);
  });

  test('the table: name, kind, grid, heads, channels, patchable or the reason', async () => {
    const t = formatBlocks(await inspect(fixture('sd_transformer_32x32.onnx')));
    const lines = t.split('\n');
    expect(lines[0]).toMatch(/^block\s+kind\s+grid\s+heads\s+channels\s+patchable$/);
    expect(lines[2]).toMatch(/^\/transformer_blocks\.0\/attn1\s+self\s+32x32\s+4\s+64\s+yes$/);
    expect(lines[3]).toMatch(/^\/transformer_blocks\.0\/attn2\s+cross\s+32x32\s+4\s+64\s+no: cross-attention/);
    const f = formatBlocks(await inspect(fixture('flux_joint.onnx')));
    expect(f).toMatch(/\/Softmax\s+joint\s+\?\s+2\s+64\s+yes/);
    const p = formatBlocks(await inspect(PPOCR));
    expect(p).toMatch(/skipped p2o\.Softmax\.2: .*classifier/);
  });

  test('parseGrid', () => {
    expect(parseGrid('64x64')).toEqual([64, 64]);
    expect(parseGrid('1X40')).toEqual([1, 40]);
    expect(parseGrid('32,16')).toEqual([32, 16]);
    expect(() => parseGrid('0x4')).toThrow(RangeError);
    expect(() => parseGrid('64')).toThrow(/HxW/);
  });

  test('writes the patched model (or says clearly that patchModel is missing), never the input', async () => {
    const out = path.join(dir, 'patched.onnx');
    const input = fixture('sd_transformer_32x32.onnx');
    const before = fs.readFileSync(input);
    const s = sink();
    const run = runPatch(input, out, { ratio: 0.5, mode: 'standard-ops' }, s.stream);
    if (!patchAvailable) {
      await expect(run).rejects.toThrow(/patchModel is not available/);
      expect(s.text()).toMatch(/\/transformer_blocks\.0\/attn1\s+self/);
      return;
    }
    await run;
    expect(s.text()).toMatch(/sd_transformer_32x32\.onnx: 313 nodes, 4 attention blocks/);
    expect(s.text()).toMatch(/\/transformer_blocks\.1\/attn1\s+self\s+32x32\s+4\s+64\s+yes/);
    expect(s.text()).toContain(`wrote ${out}`);
    expect(fs.statSync(out).size).toBeGreaterThan(0);
    expect(fs.readFileSync(input).equals(before)).toBe(true);
    await expect(runPatch(input, input, { ratio: 0.5 }, sink().stream)).rejects.toThrow(/never overwrites|input/);
  });

  test('through the binary: bad ratio and missing files exit non-zero with a message', () => {
    const cli = path.join(ROOT, 'lib', 'cli.ts');
    const run = (args: string[]) => {
      try {
        return { code: 0, out: execFileSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: ROOT, encoding: 'utf8', stdio: 'pipe' }) };
      } catch (e) {
        const err = e as { status: number; stderr: string; stdout: string };
        return { code: err.status, out: err.stdout + err.stderr };
      }
    };
    const bad = run(['patch', fixture('sd_transformer_32x32.onnx'), path.join(dir, 'x.onnx'), '--ratio', '1.5']);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toMatch(/ratio must be a number in \[0, 1\)/);
    const missing = run(['patch', path.join(dir, 'nope.onnx'), path.join(dir, 'y.onnx')]);
    expect(missing.code).toBe(1);
    expect(missing.out).toMatch(/toma: .*ENOENT/);
    const grid = run(['patch', fixture('flux_joint.onnx'), path.join(dir, 'z.onnx'), '--grid', 'big']);
    expect(grid.code).not.toBe(0);
    expect(grid.out).toMatch(/grid must be HxW/);
  });
});

describe('toma inspect', () => {
  const sd15 = path.join(ROOT, 'models', 'corpus', 'sd15_sdpa_dynamic.onnx');
  test('one line per block; a dynamic UNet tells its grids with --shapes', async () => {
    const plain = sink();
    await runInspect(sd15, {}, plain.stream);
    const lines = plain.text().split('\n');
    expect(lines[0]).toMatch(/attention blocks: 16 self, 0 joint, 16 cross; patchable: 16/);
    expect(lines.filter((l) => /self-attention .* grid from the input shapes at run time: patchable/.test(l))).toHaveLength(16);
    expect(lines.filter((l) => /cross-attention .*: never merged/.test(l))).toHaveLength(16);
    const shaped = sink();
    await runInspect(sd15, { shapes: parseShapes('sample=1x4x64x48,timestep=1,encoder_hidden_states=1x77x32') }, shaped.stream);
    const grids = shaped.text().match(/grid \d+x\d+/g) ?? [];
    expect(new Set(grids)).toEqual(new Set(['grid 64x48', 'grid 32x24', 'grid 16x12', 'grid 8x6']));
  });

  test('--shapes is checked', () => {
    expect(() => parseShapes('sample=1x4x64')).not.toThrow();
    expect(() => parseShapes('sample:1x4')).toThrow(RangeError);
    expect(() => parseShapes('sample=1xx4')).toThrow(/name=AxBxC/);
    const cmd = buildProgram().commands.find((c) => c.name() === 'inspect');
    expect(cmd!.options.map((o) => o.long)).toEqual(['--shapes']);
  });
});

describe('toma info', () => {
  async function capture(f: () => Promise<void>): Promise<string> {
    const write = process.stdout.write.bind(process.stdout);
    let text = '';
    process.stdout.write = ((chunk: string | Uint8Array) => {
      text += String(chunk);
      return true;
    }) as typeof process.stdout.write;
    try {
      await f();
    } finally {
      process.stdout.write = write;
    }
    return text;
  }

  test("prints SDXL's two shapes by default, 64x64 and 32x32, each with its amortised speed-up", async () => {
    const text = await capture(() => runInfo({ batch: 1, ratio: 0.5 }));
    expect(text).toMatch(/shape: B=1, N=64x64, C=640, 10 heads, ratio 0.5/);
    expect(text).toMatch(/shape: B=1, N=32x32, C=1280, 20 heads, ratio 0.5/);
    expect(text.match(/1 plan per 5 calls\s+\d+\.\d\s+\d+\.\d\dx/g)).toHaveLength(2);
    expect(text).toMatch(/K = 2048 of 4096 tokens kept/);
    expect(text).toMatch(/K = 512 of 1024 tokens kept/);
  }, 60000);

  test('one shape when the shape is given', async () => {
    const text = await capture(() => runInfo({ grid: 8, channels: 64, heads: 2, batch: 1, ratio: 0.25 }));
    expect(text.match(/shape: /g)).toHaveLength(1);
    expect(text).toMatch(/shape: B=1, N=8x8, C=64, 2 heads, ratio 0.25 \(as given\)/);
    expect(text).toMatch(/K = 48 of 64 tokens kept/);
  });
});
