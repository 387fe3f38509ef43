// ToDo's pooling as a plan: keys and values averaged over cells of an adaptive grid, so the kept
// fraction matches the ratio (2x2 cells at 0.75 on even grids); queries are not merged.

/** Pooled grid size for a ratio: about sqrt(1 - ratio) of each side, at least 1. */
export function todoGrid(H: number, W: number, ratio: number): [number, number] {
  const f = Math.sqrt(1 - ratio);
  return [Math.max(1, Math.min(H, Math.round(H * f))), Math.max(1, Math.min(W, Math.round(W * f)))];
}

/** [B, N] flat: token (r, c) goes to pooled cell (floor(r h / H), floor(c w / W)). */
export function todoAssignment(B: number, H: number, W: number, ratio: number): { assignment: Int32Array; K: number } {
  const [h, w] = todoGrid(H, W, ratio);
  const N = H * W;
  const a = new Int32Array(B * N);
  for (let r = 0; r < H; r++)
    for (let c = 0; c < W; c++) {
      const j = Math.floor((r * h) / H) * w + Math.floor((c * w) / W);
      for (let b = 0; b < B; b++) a[b * N + r * W + c] = j;
    }
  return { assignment: a, K: h * w };
}
