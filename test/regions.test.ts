// Regions (SPEC section 2) and destination counts (SPEC section 3), seen through plan.matrices()
// and plan.K, against the reference.
import * as toma from '../lib';
import { randomTensor } from './helpers/data';
import { destinationCount, regions, totalDestinations, type Region } from './reference';

const GRIDS: Array<[number, number]> = [
  [5, 7],
  [9, 6],
  [1, 13],
  [13, 1],
  [4, 4],
  [1, 1],
  [11, 3],
];
const REGIONS: Array<Region | undefined> = [
  undefined,
  { kind: 'tile', th: 3, tw: 2 },
  { kind: 'tile', th: 2, tw: 5 },
  { kind: 'tile', th: 1, tw: 1 },
  { kind: 'tile', th: 1, tw: 4 },
  { kind: 'tile', th: 20, tw: 20 },
  { kind: 'stripe', rows: 1 },
  { kind: 'stripe', rows: 2 },
  { kind: 'stripe', rows: 4 },
  { kind: 'global' },
];
const RATIOS = [0, 0.25, 0.5, 0.75, 0.9];

const rname = (r?: Region) => (r ? JSON.stringify(r) : 'default');

describe('reference regions (self-check)', () => {
  test.each(GRIDS)('every token of %ix%i lies in exactly one region, ascending inside it', (H, W) => {
    for (const r of REGIONS) {
      const regs = regions(H, W, r);
      const seen = new Array<number>(H * W).fill(0);
      for (const tokens of regs) {
        expect(tokens.length).toBeGreaterThan(0);
        for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]);
        for (const t of tokens) seen[t]++;
      }
      expect(seen.every((c) => c === 1)).toBe(true);
    }
  });

  test('a 3x2 tile on a 5x7 grid leaves remainder tiles of 3x1, 2x2 and 2x1', () => {
    const regs = regions(5, 7, { kind: 'tile', th: 3, tw: 2 });
    expect(regs.length).toBe(2 * 4);
    expect(regs.map((r) => r.length)).toEqual([6, 6, 6, 3, 4, 4, 4, 2]);
    expect(regs[3]).toEqual([6, 13, 20]);
    expect(regs[7]).toEqual([27, 34]);
  });

  test('destination count follows k = clamp(floor((1 - ratio) n + 0.5), 1, n)', () => {
    expect(destinationCount(16, 0)).toBe(16);
    expect(destinationCount(16, 0.5)).toBe(8);
    expect(destinationCount(6, 0.75)).toBe(2); // 1.5 + 0.5
    expect(destinationCount(3, 0.5)).toBe(2); // 1.5 + 0.5
    expect(destinationCount(1, 0.9)).toBe(1); // clamped up to 1
    expect(destinationCount(4, 0.9)).toBe(1);
  });
});

describe('plan regions match the reference', () => {
  const cases: Array<[number, number, Region | undefined, number]> = [];
  for (const [H, W] of GRIDS) for (const r of REGIONS) cases.push([H, W, r, RATIOS[(H * 7 + W + cases.length) % RATIOS.length]]);

  test.each(cases)('%ix%i region %p ratio %p', async (H, W, region, ratio) => {
    const C = 8;
    const { t } = randomTensor(`regions ${H}x${W} ${rname(region)} ${ratio}`, [1, H * W, C]);
    const o: toma.PlanOptions = { grid: [H, W], ratio };
    if (region) o.region = region;
    const plan = await toma.computePlan(t, o);
    const ref = regions(H, W, region);
    const mats = plan.matrices();
    expect(mats.length).toBe(ref.length);
    mats.forEach((m, i) => {
      expect(m.tokens).toBeInstanceOf(Int32Array);
      expect(Array.from(m.tokens)).toEqual(ref[i]);
      const k = destinationCount(ref[i].length, ratio);
      expect(m.destinations.length).toBe(k);
      expect(m.M.length).toBe(k * ref[i].length);
      expect(m.U.length).toBe(ref[i].length * k);
    });
    expect(plan.K).toBe(totalDestinations(H, W, ratio, region));
    expect(plan.N).toBe(H * W);
    expect(plan.grid).toEqual([H, W]);
    expect(plan.region).toEqual(region ?? { kind: 'tile', th: 4, tw: 4 });
    if (ratio === 0) expect(plan.K).toBe(H * W);
  });

  test('an SDXL-like odd grid (37x29) with tile, stripe and global regions', async () => {
    const [H, W] = [37, 29];
    const { t } = randomTensor('regions 37x29', [1, H * W, 4]);
    for (const region of [{ kind: 'tile', th: 4, tw: 4 }, { kind: 'tile', th: 5, tw: 3 }, { kind: 'stripe', rows: 6 }] as Region[]) {
      const plan = await toma.computePlan(t, { grid: [H, W], ratio: 0.5, region });
      const ref = regions(H, W, region);
      const mats = plan.matrices();
      expect(mats.map((m) => Array.from(m.tokens))).toEqual(ref);
      expect(plan.K).toBe(totalDestinations(H, W, 0.5, region));
    }
  });

  test('ratio 0.9 on 35 and 15 tokens: the float64 formula as written (floor(3.4999..+0.5) = 3)', async () => {
    // (1 - 0.9) is 0.09999999999999998 in float64, so n = 35 and n = 15 land just below .5.
    for (const [H, W] of [
      [5, 7],
      [3, 5],
    ] as Array<[number, number]>) {
      const { t } = randomTensor(`regions ratio0.9 ${H}x${W}`, [1, H * W, 8]);
      const plan = await toma.computePlan(t, { grid: [H, W], ratio: 0.9, region: { kind: 'global' } });
      expect(plan.K).toBe(destinationCount(H * W, 0.9));
    }
  });
});
