// Reference: regions (SPEC section 2) and the destination count (SPEC section 3), from the SPEC
// text alone.

export type Region = { kind: 'tile'; th: number; tw: number } | { kind: 'stripe'; rows: number } | { kind: 'global' };

export const DEFAULT_REGION: Region = { kind: 'tile', th: 4, tw: 4 };

/** The regions of an H x W grid in row-major region order; each lists its tokens ascending. */
export function regions(H: number, W: number, region: Region = DEFAULT_REGION): number[][] {
  const out: number[][] = [];
  if (region.kind === 'global') {
    const all: number[] = [];
    for (let t = 0; t < H * W; t++) all.push(t);
    out.push(all);
    return out;
  }
  const th = region.kind === 'tile' ? region.th : region.rows;
  const tw = region.kind === 'tile' ? region.tw : W;
  const tilesDown = Math.ceil(H / th);
  const tilesAcross = Math.ceil(W / tw);
  for (let i = 0; i < tilesDown; i++) {
    for (let j = 0; j < tilesAcross; j++) {
      const tokens: number[] = [];
      for (let r = i * th; r < Math.min(H, (i + 1) * th); r++) {
        for (let c = j * tw; c < Math.min(W, (j + 1) * tw); c++) tokens.push(r * W + c);
      }
      out.push(tokens);
    }
  }
  return out;
}

/** k = clamp(floor((1 - ratio) * n + 0.5), 1, n), evaluated in float64 as written. */
export function destinationCount(n: number, ratio: number): number {
  const k = Math.floor((1 - ratio) * n + 0.5);
  return Math.min(n, Math.max(1, k));
}

/** K: the sum of the per-region destination counts. */
export function totalDestinations(H: number, W: number, ratio: number, region: Region = DEFAULT_REGION): number {
  return regions(H, W, region).reduce((s, r) => s + destinationCount(r.length, ratio), 0);
}
