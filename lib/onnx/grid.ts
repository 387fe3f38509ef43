// The token grid of a block whose graph does not show it. UNets and patch-embedding transformers
// make their tokens from an NCHW map, whose H x W the matcher reads (statically, or with the input
// shapes bound). Models fed tokens (Flux's packed latents) carry the grid in their position ids:
// an input of [N, 2 | 3] (or [B, N, 2 | 3]) rows (.., row, col), as Flux's img_ids. Where neither
// tells, a perfect square of tokens is taken as a square grid, with a warning.
import type { AttentionBlock } from './matcher';
import type { OnnxModel } from './model';
import type { OrtTensor } from './session-types';
import { feedInputs } from './specialize';

/** Grids read from position-id inputs, by their row count. */
export type GridHints = ReadonlyMap<number, [number, number]>;

function numbers(t: OrtTensor): ArrayLike<number | bigint> | undefined {
  const d = t.data as unknown;
  if (d instanceof Float32Array || d instanceof Float64Array || d instanceof Int32Array || d instanceof BigInt64Array || d instanceof Int16Array || d instanceof Uint8Array)
    return d as ArrayLike<number | bigint>;
  return undefined;
}

/** The grid spanned by position ids [rows, k] (k = 2: row, col; k = 3: frame/type, row, col), if they tile it exactly. */
export function gridFromIds(data: ArrayLike<number | bigint>, rows: number, k: number): [number, number] | undefined {
  if (k !== 2 && k !== 3) return undefined;
  let r0 = Infinity;
  let r1 = -Infinity;
  let c0 = Infinity;
  let c1 = -Infinity;
  for (let i = 0; i < rows; i++) {
    const r = Number(data[i * k + k - 2]);
    const c = Number(data[i * k + k - 1]);
    if (!Number.isInteger(r) || !Number.isInteger(c)) return undefined;
    r0 = Math.min(r0, r);
    r1 = Math.max(r1, r);
    c0 = Math.min(c0, c);
    c1 = Math.max(c1, c);
  }
  const H = r1 - r0 + 1;
  const W = c1 - c0 + 1;
  if (!(H >= 1 && W >= 1) || H * W !== rows) return undefined;
  // every (row, col) once, in row-major order, as the tokens are laid out
  for (let i = 0; i < rows; i++) {
    const r = Number(data[i * k + k - 2]) - r0;
    const c = Number(data[i * k + k - 1]) - c0;
    if (r * W + c !== i) return undefined;
  }
  return [H, W];
}

/** Grids from the feeds' position-id inputs (float or integer [N, 2|3] / [1, N, 2|3]). */
export function gridHints(model: OnnxModel, feeds: Record<string, OrtTensor>): Map<number, [number, number]> {
  const hints = new Map<number, [number, number]>();
  const ambiguous = new Set<number>();
  for (const v of feedInputs(model)) {
    const t = feeds[v.name];
    if (!t) continue;
    const dims = [...t.dims].map(Number);
    if (!(dims.length === 2 || (dims.length === 3 && dims[0] === 1))) continue;
    const k = dims[dims.length - 1];
    const rows = dims[dims.length - 2];
    if ((k !== 2 && k !== 3) || rows < 1) continue;
    const data = numbers(t);
    if (!data) continue;
    const grid = gridFromIds(data, rows, k);
    if (!grid) continue;
    const prev = hints.get(rows);
    if (prev && (prev[0] !== grid[0] || prev[1] !== grid[1])) ambiguous.add(rows);
    hints.set(rows, grid);
  }
  for (const r of ambiguous) hints.delete(r);
  return hints;
}

/** Image tokens of a block (its sequence less the text beside them), when known. */
export function imageTokens(b: AttentionBlock): number | undefined {
  if (typeof b.tokens !== 'number') return undefined;
  if (b.kind === 'joint') return b.tokens;
  return b.tokens - (b.prefix ?? 0) - (b.suffix ?? 0);
}

export interface ResolvedGrid {
  grid?: [number, number];
  from: string;
  warning?: string;
}

/** A block's grid: the graph's, else options.grid, else position ids, else a square of its tokens. */
export function resolveGrid(b: AttentionBlock, userGrid: [number, number] | undefined, hints?: GridHints): ResolvedGrid {
  if (b.grid) return { grid: b.grid, from: 'from the graph' };
  if (userGrid) return { grid: userGrid, from: 'options.grid' };
  const N = imageTokens(b);
  if (N === undefined) return { from: 'unknown' };
  const h = hints?.get(N);
  if (h) return { grid: h, from: 'from the position ids' };
  if (b.tokensInput) {
    const side = Math.round(Math.sqrt(N));
    if (side * side === N)
      return {
        grid: [side, side],
        from: 'assumed square',
        warning: `block '${b.name}': the graph takes tokens (${b.tokensInput}) and no position ids tell their grid; ${N} tokens are taken as a ${side}x${side} square (pass options.grid for another shape)`,
      };
  }
  return { from: 'unknown' };
}
