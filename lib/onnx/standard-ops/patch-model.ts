// patchModel: reads a model, applies the standard-ops rewrite and writes a standalone model
// (temporary file + rename beside the output; the input is never written).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readModel, writeModel, type WriteOptions } from '../model';
import { checkInputShapes } from '../inspect';
import { patchGraph, type PatchOptions, type PatchReport } from './patch';

export type PatchModelOptions = PatchOptions & {
  /** External data handling when outPath is in another directory (see writeModel). */
  externalData?: WriteOptions['externalData'];
  /**
   * The input shapes the written model will run at, for models exported with dynamic shapes: the
   * rewrite's region layouts are fixed per grid, so a dynamic UNet is patched for one latent size
   * (createSession needs none: it builds a variant per input shape at run time).
   */
  inputShapes?: Record<string, number[]>;
};

async function sameFile(a: string, b: string): Promise<boolean> {
  if (path.resolve(a) === path.resolve(b)) return true;
  const [sa, sb] = await Promise.all([fs.promises.stat(a).catch(() => undefined), fs.promises.stat(b).catch(() => undefined)]);
  if (sa && sb && sa.dev === sb.dev && sa.ino === sb.ino) return true;
  const [ra, rb] = await Promise.all([fs.promises.realpath(a).catch(() => undefined), fs.promises.realpath(path.dirname(b)).catch(() => undefined)]);
  return !!ra && !!rb && ra === path.join(rb, path.basename(b));
}

/**
 * Writes `outPath`: the model at `inPath` with ToMA in standard ONNX operators around every
 * patchable self- and joint-attention block. Never overwrites `inPath` (refuses an outPath naming
 * the same file) and leaves no partial file on error. The report lists every attention block
 * (patched, or why not), the plan groups, and the inputs/outputs added for plan reuse.
 */
export async function patchModel(inPath: string, outPath: string, options: PatchModelOptions): Promise<PatchReport> {
  if (typeof inPath !== 'string' || inPath.length === 0)
    throw new TypeError(`inPath: expected the path of an .onnx file, got ${typeof inPath === 'string' ? 'an empty string' : typeof inPath}`);
  if (typeof outPath !== 'string' || outPath.length === 0)
    throw new TypeError(`outPath: expected a file path, got ${typeof outPath === 'string' ? 'an empty string' : typeof outPath}`);
  if (await sameFile(inPath, outPath))
    throw new Error(`outPath: ${path.resolve(outPath)} is the input model; toma never overwrites its input, choose another file`);
  const { externalData, inputShapes, ...patchOptions } = options ?? ({} as PatchModelOptions);
  const bind = checkInputShapes(inputShapes);
  const model = await readModel(inPath);
  if (bind) {
    const names = new Set(model.proto.graph!.input.map((v) => v.name));
    for (const k of bind.keys()) if (!names.has(k)) throw new TypeError(`options.inputShapes.${k}: the model has no input '${k}' (inputs: ${[...names].join(', ')})`);
  }
  const report = patchGraph(model, patchOptions as PatchOptions, model.source.path, bind);
  const written = await writeModel(model, outPath, { externalData });
  report.output = written.path;
  report.bytes = written.bytes;
  return report;
}
