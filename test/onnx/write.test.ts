// The writer never overwrites its input, writes through a temporary file and a rename, and keeps
// external data files where they are.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { externalLocations, readModel, writeModel } from '../../lib/onnx/model';
import { fixture, relErr, runModel, tmpDir } from './helpers';

const leftovers = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'));

describe('never overwrites the input', () => {
  let dir: string;
  let input: string;
  beforeEach(() => {
    dir = tmpDir('w');
    input = path.join(dir, 'model.onnx');
    fs.copyFileSync(fixture('sd_transformer_64x64.onnx'), input);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('refuses outPath === inPath, also spelled differently', async () => {
    const m = await readModel(input);
    const before = fs.readFileSync(input);
    await expect(writeModel(m, input)).rejects.toThrow(/never overwrites its input/);
    await expect(writeModel(m, path.join(dir, '.', 'sub', '..', 'model.onnx'))).rejects.toThrow(/never overwrites/);
    expect(Buffer.compare(fs.readFileSync(input), before)).toBe(0);
    expect(leftovers(dir)).toEqual([]);
  });

  test('refuses a hard link or a symbolic link to the input (same inode)', async () => {
    const m = await readModel(input);
    fs.linkSync(input, path.join(dir, 'hard.onnx'));
    fs.symlinkSync(input, path.join(dir, 'soft.onnx'));
    await expect(writeModel(m, path.join(dir, 'hard.onnx'))).rejects.toThrow(/same file as the input/);
    await expect(writeModel(m, path.join(dir, 'soft.onnx'))).rejects.toThrow(/same file as the input/);
  });

  test('writes a temporary file in the target directory and renames it; replaces an existing output', async () => {
    const m = await readModel(input);
    const out = path.join(dir, 'patched.onnx');
    fs.writeFileSync(out, 'old contents');
    const seen: string[] = [];
    const watcher = fs.watch(dir, (_e, f) => f && seen.push(String(f)));
    const r = await writeModel(m, out);
    await new Promise((res) => setTimeout(res, 50));
    watcher.close();
    expect(r.path).toBe(out);
    expect(Buffer.compare(fs.readFileSync(out), fs.readFileSync(input))).toBe(0);
    expect(seen.some((f) => /^\.patched\.onnx\.\d+\.[0-9a-f]+\.tmp$/.test(f))).toBe(true);
    expect(leftovers(dir)).toEqual([]);
  });

  test('a failed write leaves neither a temporary file nor a changed output', async () => {
    const m = await readModel(input);
    const out = path.join(dir, 'patched.onnx');
    fs.writeFileSync(out, 'old contents');
    // the input changes after it was read: the writer refuses to copy payloads from it
    const t = new Date(Date.now() + 5000);
    fs.utimesSync(input, t, t);
    await expect(writeModel(m, out)).rejects.toThrow(/changed since it was read/);
    expect(fs.readFileSync(out, 'utf8')).toBe('old contents');
    expect(leftovers(dir)).toEqual([]);
    await expect(writeModel(m, path.join(dir, 'no-such-dir', 'x.onnx'))).rejects.toThrow(/ENOENT/);
    await expect(writeModel(m, '')).rejects.toThrow(TypeError);
  });
});

describe('external data', () => {
  let root: string;
  let a: string;
  beforeAll(() => {
    root = tmpDir('ext');
    a = path.join(root, 'a');
    fs.mkdirSync(a);
    fs.mkdirSync(path.join(root, 'b'));
    for (const f of ['sd_transformer_32x32_ext.onnx', 'sd_transformer_32x32_ext.onnx.data']) fs.copyFileSync(fixture(f), path.join(a, f));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  test('the fixture keeps its weights in the .data file, and the reader reads none of it', async () => {
    const m = await readModel(path.join(a, 'sd_transformer_32x32_ext.onnx'));
    expect(externalLocations(m.proto)).toEqual(['sd_transformer_32x32_ext.onnx.data']);
    expect(m.elided.count).toBe(0);
  });

  test('written beside the original: locations unchanged, runs on the same data file with the same outputs', async () => {
    const src = path.join(a, 'sd_transformer_32x32_ext.onnx');
    const dataBefore = fs.statSync(path.join(a, 'sd_transformer_32x32_ext.onnx.data'));
    const m = await readModel(src);
    const out = path.join(a, 'patched.onnx');
    const r = await writeModel(m, out);
    expect(r.relocated).toEqual([]);
    expect(Buffer.compare(fs.readFileSync(out), fs.readFileSync(src))).toBe(0);
    const [x, y, ref] = [await runModel(src), await runModel(out), await runModel(fixture('sd_transformer_32x32.onnx'))];
    expect(relErr(x.out_sample, y.out_sample)).toBe(0);
    expect(relErr(ref.out_sample, y.out_sample)).toBe(0);
    const dataAfter = fs.statSync(path.join(a, 'sd_transformer_32x32_ext.onnx.data'));
    expect(dataAfter.mtimeMs).toBe(dataBefore.mtimeMs);
    expect(fs.readdirSync(a).sort()).toEqual(['patched.onnx', 'sd_transformer_32x32_ext.onnx', 'sd_transformer_32x32_ext.onnx.data']);
  });

  test('written into an ancestor directory: locations rewritten to stay valid, and onnxruntime runs it', async () => {
    const m = await readModel(path.join(a, 'sd_transformer_32x32_ext.onnx'));
    const out = path.join(root, 'up.onnx');
    const r = await writeModel(m, out);
    expect(r.relocated).toEqual([{ from: 'sd_transformer_32x32_ext.onnx.data', to: 'a/sd_transformer_32x32_ext.onnx.data' }]);
    expect(externalLocations((await readModel(out)).proto)).toEqual(['a/sd_transformer_32x32_ext.onnx.data']);
    // the in-memory model is unchanged by the write
    expect(externalLocations(m.proto)).toEqual(['sd_transformer_32x32_ext.onnx.data']);
    const y = await runModel(out);
    const ref = await runModel(fixture('sd_transformer_32x32.onnx'));
    expect(relErr(ref.out_sample, y.out_sample)).toBe(0);
  });

  test('written into a sibling directory: refused by default (onnxruntime rejects ../ data), allowed with relocate', async () => {
    const m = await readModel(path.join(a, 'sd_transformer_32x32_ext.onnx'));
    const out = path.join(root, 'b', 'side.onnx');
    await expect(writeModel(m, out)).rejects.toThrow(/outside the directory of the model's external data/);
    expect(fs.existsSync(out)).toBe(false);
    await expect(writeModel(m, out, { externalData: 'error' })).rejects.toThrow(/external data/);
    const r = await writeModel(m, out, { externalData: 'relocate' });
    expect(r.relocated[0].to).toBe('../a/sd_transformer_32x32_ext.onnx.data');
    await expect(ort.InferenceSession.create(out)).rejects.toThrow(/escapes model directory/);
  });
});
