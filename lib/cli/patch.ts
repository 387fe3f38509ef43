// `toma patch in.onnx out.onnx --ratio 0.5 [--mode standard-ops] [--grid HxW]`: prints what the
// matcher found in each attention block, then writes the patched model with toma.onnx.patchModel
// (the standard-ops rewrite; never overwrites the input).
import { inspect, type InspectReport } from '../onnx/inspect';

export interface PatchCliOptions {
  ratio: number;
  mode?: string;
  grid?: [number, number];
  shapes?: Record<string, number[]>;
}

type PatchModel = (inPath: string, outPath: string, o: Record<string, unknown>) => Promise<unknown>;

/** patchModel, from toma.onnx when it is exported there, else from the standard-ops module. */
export function loadPatchModel(): PatchModel {
  const tried: string[] = [];
  for (const id of ['../onnx', '../onnx/standard-ops']) {
    let mod: { patchModel?: PatchModel };
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      mod = require(id);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'MODULE_NOT_FOUND' && err.message.includes('standard-ops')) {
        tried.push(`${id} (missing)`);
        continue;
      }
      throw e;
    }
    if (typeof mod.patchModel === 'function') return mod.patchModel;
    tried.push(`${id} (no patchModel export)`);
  }
  throw new Error(
    `toma.onnx.patchModel is not available in this build (looked in ${tried.join(', ')}); ` +
      "the segments mode needs no file: use toma.onnx.createSession(path, { ratio, mode: 'segments' })",
  );
}

export function parseGrid(v: string): [number, number] {
  const m = /^(\d+)[xX,](\d+)$/.exec(v.trim());
  const g = m ? [Number(m[1]), Number(m[2])] : [];
  if (g.length !== 2 || !g.every((d) => Number.isInteger(d) && d >= 1)) throw new RangeError(`grid must be HxW with positive integers, got '${v}'`);
  return g as [number, number];
}

/** `--shapes sample=2x4x64x64,timestep=2`: the input shapes of one run, for dynamic-shape models. */
export function parseShapes(v: string): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const part of v.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([^=]+)=(\d+(?:x\d+)*)$/.exec(part);
    if (!m) throw new RangeError(`shapes: expected name=AxBxC entries separated by commas, got '${part}'`);
    out[m[1]] = m[2].split('x').map(Number);
  }
  return out;
}

/** `toma inspect`: one line per attention block (what it is, its grid, or why it stays dense). */
export async function runInspect(input: string, o: { shapes?: Record<string, number[]> }, out: NodeJS.WritableStream = process.stdout): Promise<InspectReport> {
  const report = await inspect(input, o.shapes ? { inputShapes: o.shapes } : {});
  const counts = ['self', 'joint', 'cross'].map((k) => `${report.blocks.filter((b) => b.kind === k).length} ${k}`).join(', ');
  out.write(`${report.model.path}: ${report.model.nodes} nodes; attention blocks: ${counts}; patchable: ${report.blocks.filter((b) => b.patchable).length}
`);
  for (const b of report.blocks) out.write(`  ${b.name}: ${b.summary}\n`);
  for (const sk of report.skipped) out.write(`  skipped ${sk.node}: ${sk.reason}\n`);
  return report;
}

/** The per-block table: name, kind, grid, heads, channels, patchable / reason. */
export function formatBlocks(report: InspectReport): string {
  const rows = report.blocks.map((b) => [
    b.name,
    b.kind,
    b.grid ? `${b.grid[0]}x${b.grid[1]}` : '?',
    String(b.heads || '?'),
    String(b.channels || '?'),
    b.patchable ? 'yes' : `no: ${b.reason ?? 'unknown'}`,
  ]);
  const head = ['block', 'kind', 'grid', 'heads', 'channels', 'patchable'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (i === 5 ? 0 : r[i].length))));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === 5 ? c : i >= 3 && i <= 4 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const out = [line(head), line(widths.map((w, i) => (i === 5 ? '---------' : '-'.repeat(w)))), ...rows.map(line)];
  if (!report.blocks.length) out.push('(no attention block found)');
  for (const s of report.skipped) out.push(`skipped ${s.node}: ${s.reason}`);
  return out.join('\n');
}

export async function runPatch(input: string, output: string, o: PatchCliOptions, out: NodeJS.WritableStream = process.stdout): Promise<unknown> {
  const report = await inspect(input, o.shapes ? { inputShapes: o.shapes } : {});
  out.write(`${report.model.path}: ${report.model.nodes} nodes, ${report.blocks.length} attention blocks\n\n`);
  out.write(`${formatBlocks(report)}\n\n`);
  const patchModel = loadPatchModel();
  const result = await patchModel(input, output, {
    ratio: o.ratio,
    ...(o.mode ? { mode: o.mode } : {}),
    ...(o.grid ? { grid: o.grid } : {}),
    ...(o.shapes ? { inputShapes: o.shapes } : {}),
  });
  out.write(`wrote ${output}\n`);
  if (result !== undefined) {
    const text = JSON.stringify(result, (_k, v) => (typeof v === 'bigint' ? Number(v) : v), 2) ?? String(result);
    out.write(`${text.length > 20000 ? `${text.slice(0, 20000)}\n... (${text.length} characters)` : text}\n`);
  }
  return result;
}
