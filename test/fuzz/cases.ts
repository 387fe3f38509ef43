// The fuzz cases: from one seed, a call of one public toma function with valid arguments and 0..2
// mutations (wrong types, shapes, ranks, sizes, NaN/Infinity, dtypes, detached / short /
// SharedArrayBuffer-backed arrays, foreign plans, fake plans, throwing getters and proxies).
//
// The error contract checked for every case (SPEC section 8, decided here for the fuzzer):
//   - ops, Plan members, createProcessor / processor.*: resolve, or reject / throw a TypeError or
//     RangeError (BackendUnavailableError where a backend is forced), whose message contains one
//     of the names recorded for the mutation (the argument or option path that was broken);
//   - onnx.inspect / patchModel / createSession additionally: OnnxFormatError (a corrupt or
//     truncated file; the message names the file), a system Error with an errno `code` (ENOENT,
//     EISDIR, ... from the file system; the message names the path), and the plain Error
//     "outPath: ..." refusals of patchModel (never overwrites its input, the output would sit
//     outside the directory of the external data, not a regular file). onnxruntime's own errors (a corrupted model that
//     our reader accepted and onnxruntime refused) are plain Errors: allowed for createSession only
//     and counted separately ('ortError');
//   - a sentinel thrown by a getter / proxy of the fuzzer itself may come back unchanged;
//   - every typed array reachable from the arguments is byte-identical afterwards.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as toma from '../../lib';

export class FuzzSentinel extends Error {
  constructor(what: string) {
    super(`fuzz sentinel: ${what}`);
    this.name = 'FuzzSentinel';
  }
}

// ---------------------------------------------------------------------------------------------
// seeded randomness

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = (seed ^ 0x9e3779b9) >>> 0;
    for (let i = 0; i < 4; i++) this.next();
  }
  next(): number {
    // mulberry32
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(a: readonly T[]): T {
    return a[Math.floor(this.next() * a.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

// ---------------------------------------------------------------------------------------------
// values

type Dtype = toma.Dtype;
type AnyObj = Record<string, unknown>;

function randomData(r: Rng, n: number, dtype: Dtype): Float32Array | Uint16Array {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = r.next() * 2 - 1;
  if (dtype === 'float32') return f;
  return toma.fromFloat32(f, [1, 1, n], dtype).data;
}

function tensor(r: Rng, shape: number[], dtype: Dtype): toma.Tensor {
  return { data: randomData(r, shape[0] * shape[1] * shape[2], dtype), shape: shape.slice(), dtype };
}

const NUMBERS = [NaN, Infinity, -Infinity, -1, 0, -0, 0.5, 1.5, 1e12, 2 ** 31, 2 ** 53, -(2 ** 31), Number.MAX_VALUE, Number.MIN_VALUE];

function throwingGetterObject(keys: string[], base: AnyObj, bad: string): AnyObj {
  const o: AnyObj = {};
  for (const k of keys)
    if (k === bad)
      Object.defineProperty(o, k, {
        enumerable: true,
        get() {
          throw new FuzzSentinel(`getter ${k}`);
        },
      });
    else o[k] = base[k];
  return o;
}

function throwingProxy(base: AnyObj): AnyObj {
  return new Proxy(base, {
    get() {
      throw new FuzzSentinel('proxy get');
    },
    has() {
      throw new FuzzSentinel('proxy has');
    },
    ownKeys() {
      throw new FuzzSentinel('proxy ownKeys');
    },
    getOwnPropertyDescriptor() {
      throw new FuzzSentinel('proxy descriptor');
    },
  });
}

/** Junk for any slot: [value, expectReject]. */
function junk(r: Rng): unknown {
  return r.pick<() => unknown>([
    () => undefined,
    () => null,
    () => r.pick(NUMBERS),
    () => 'float32',
    () => '',
    () => true,
    () => Symbol('fuzz'),
    () => 12n,
    () => [],
    () => [1, 2, 3],
    () => ({}),
    () => () => 1,
    () => new Float32Array(4),
    () => new Int32Array(3),
    () => new Date(0),
    () => Object.create(null),
  ])();
}

function detached(a: Float32Array | Uint16Array | Int32Array): typeof a {
  structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
  return a;
}

function sabCopy<T extends Float32Array | Uint16Array | Int32Array>(a: T): T {
  const sab = new SharedArrayBuffer(a.byteLength);
  const c = new (a.constructor as { new (b: SharedArrayBuffer): T })(sab);
  c.set(a as never);
  return c;
}

// ---------------------------------------------------------------------------------------------
// the case

export type Family = 'op' | 'plan' | 'processor' | 'onnx';

export interface FuzzCase {
  seed: number;
  fn: string;
  family: Family;
  /** What was broken, for the report. */
  mutations: string[];
  /** Names one of which the error message must contain (empty: no check). */
  names: string[];
  /** The call must reject (the input is invalid for sure). */
  mustReject: boolean;
  /** Arguments whose typed arrays are compared before / after. */
  args: unknown[];
  run: () => Promise<unknown> | unknown;
  /** Extra check after the call (files left behind...); returns a failure text or undefined. */
  after?: (settled: { ok: boolean; error?: unknown }) => string | undefined;
}

interface Ctx {
  r: Rng;
  mutations: string[];
  names: string[];
  mustReject: boolean;
}

function note(c: Ctx, what: string, names: string[], mustReject: boolean): void {
  c.mutations.push(what);
  c.names.push(...names);
  if (mustReject) c.mustReject = true;
}

/** Mutates a tensor argument (returns the replacement value). */
function mutateTensor(c: Ctx, t: toma.Tensor, name: string): unknown {
  const r = c.r;
  const n = t.data.length;
  switch (r.int(0, 15)) {
    case 0: {
      const v = junk(r);
      note(c, `${name} = junk`, [name], true);
      return v;
    }
    case 1: {
      note(c, `${name}.data = junk`, [`${name}.data`], true);
      return { ...t, data: junk(r) };
    }
    case 2: {
      const Ctor = r.pick([Float64Array, Int32Array, Uint8Array, Int16Array, Int8Array, Uint32Array]);
      note(c, `${name}.data = ${Ctor.name}`, [`${name}.data`], true);
      return { ...t, data: new Ctor(n) };
    }
    case 3: {
      note(c, `${name}.data = plain array`, [`${name}.data`], true);
      return { ...t, data: Array.from(t.data) };
    }
    case 4: {
      const cut = r.int(0, Math.max(0, n - 1));
      note(c, `${name}.data short (${cut} of ${n})`, [`${name}.data`, `${name}.shape`], true);
      return { ...t, data: t.data.subarray(0, cut) };
    }
    case 5: {
      note(c, `${name}.data detached`, [`${name}.data`], true);
      return { ...t, data: detached(t.data) };
    }
    case 6: {
      note(c, `${name}.data SharedArrayBuffer-backed`, [], false);
      return { ...t, data: sabCopy(t.data) };
    }
    case 7: {
      // an offset view onto a larger buffer (valid)
      const big = new (t.data.constructor as { new (n: number): Float32Array | Uint16Array })(n + 5);
      big.set(t.data as never, 3);
      note(c, `${name}.data offset view`, [], false);
      return { ...t, data: big.subarray(3, 3 + n) };
    }
    case 8: {
      const i = r.int(0, n - 1);
      const bad = r.pick([NaN, Infinity, -Infinity]);
      const d = t.data.slice();
      if (d instanceof Float32Array) d[i] = bad;
      else d[i] = t.dtype === 'float16' ? (bad !== bad ? 0x7e00 : bad > 0 ? 0x7c00 : 0xfc00) : (bad !== bad ? 0x7fc0 : bad > 0 ? 0x7f80 : 0xff80);
      note(c, `${name}.data[${i}] = ${bad}`, [`${name}.data`, name], true);
      return { ...t, data: d };
    }
    case 9: {
      const shape = r.pick([[t.shape[0], t.shape[1]], [1, ...t.shape], [], [n]]);
      note(c, `${name}.shape rank ${shape.length}`, [`${name}.shape`], true);
      return { ...t, shape };
    }
    case 10: {
      const shape = t.shape.slice() as unknown[];
      const i = r.int(0, 2);
      shape[i] = r.pick<unknown>([...NUMBERS, '4', null, undefined, {}]);
      note(c, `${name}.shape[${i}] = ${String(shape[i])}`, [`${name}.shape`, `${name}.data`], shape[i] !== t.shape[i]);
      return { ...t, shape };
    }
    case 11: {
      const shape = t.shape.slice();
      const i = r.int(0, 2);
      const j = (i + 1) % 3;
      // same element count, other factorisation: valid for the tensor, maybe not for the op
      if (shape[i] % 2 === 0) {
        shape[i] /= 2;
        shape[j] *= 2;
      }
      note(c, `${name}.shape refactored ${JSON.stringify(shape)}`, [name, 'options', 'plan', 'heads', 'prefix', 'grid', 'shape'], false);
      return { ...t, shape };
    }
    case 12: {
      const dtype = r.pick<unknown>(['float64', 'int8', 'FLOAT32', 1, null, {}, t.dtype === 'float32' ? 'float16' : 'float32']);
      note(c, `${name}.dtype = ${String(dtype)}`, [`${name}.dtype`, `${name}.data`], true);
      return { ...t, dtype };
    }
    case 13: {
      if (t.dtype === 'float32') {
        note(c, `${name}.dtype omitted (Float32Array)`, [], false);
        return { data: t.data, shape: t.shape };
      }
      note(c, `${name}.dtype omitted (Uint16Array)`, [`${name}.dtype`], true);
      return { data: t.data, shape: t.shape };
    }
    case 14: {
      const k = r.pick(['data', 'shape', 'dtype']);
      note(c, `${name}.${k} getter throws`, [], true);
      return throwingGetterObject(['data', 'shape', 'dtype'], t as unknown as AnyObj, k);
    }
    default: {
      note(c, `${name} proxy that throws`, [], true);
      return throwingProxy(t as unknown as AnyObj);
    }
  }
}

/** Mutates one key (or the whole) of an options object. `keys`: the keys worth breaking. */
function mutateOptions(c: Ctx, o: AnyObj, name: string, keys: string[]): unknown {
  const r = c.r;
  const roll = r.int(0, 11);
  if (roll === 0) {
    const v = r.pick<unknown>([null, 5, 'options', [], true, Symbol('o')]);
    note(c, `${name} = ${String(v)}`, [name], v !== undefined);
    return v;
  }
  if (roll === 1) {
    const k = r.pick(keys);
    note(c, `${name}.${k} getter throws`, [], true);
    return throwingGetterObject([...new Set([...Object.keys(o), k])], o, k);
  }
  if (roll === 2) {
    note(c, `${name} proxy that throws`, [], true);
    return throwingProxy(o);
  }
  const k = r.pick(keys);
  const out: AnyObj = { ...o };
  if (k === 'grid') {
    const [H, W] = (o.grid as number[] | undefined) ?? [4, 4];
    const g = r.pick<unknown>([[H], [H, W, 1], [0, W], [H, -1], [NaN, W], [H, Infinity], [1e9, 1e9], [String(H), W], [H + 0.5, W], 'HxW', null, [W, H], [65537, 1]]);
    out.grid = g;
    // [W, H] has the same N = H * W: valid for most functions
    note(c, `${name}.grid = ${JSON.stringify(g)}`, [`${name}.grid`, 'grid', 'x.shape', 'shape'], JSON.stringify(g) !== JSON.stringify([W, H]));
    return out;
  }
  if (k === 'region') {
    const rg = r.pick<unknown>([
      { kind: 'tile', th: 0, tw: 2 },
      { kind: 'tile', th: 1.5, tw: 2 },
      { kind: 'tile', th: NaN, tw: 2 },
      { kind: 'tile', th: 2 },
      { kind: 'tile', th: 2 ** 40, tw: 1 },
      { kind: 'stripe', rows: -1 },
      { kind: 'stripe' },
      { kind: 'hexagon' },
      { kind: 7 },
      'tile',
      null,
      [],
    ]);
    out.region = rg;
    note(c, `${name}.region = ${JSON.stringify(rg)}`, [`${name}.region`, 'region'], true);
    return out;
  }
  if (k === 'backend') {
    const b = r.pick<unknown>(['gpu', 'CPU', 1, null]);
    out.backend = b;
    note(c, `${name}.backend = ${String(b)}`, [`${name}.backend`, 'backend'], true);
    return out;
  }
  if (k === 'destinations') {
    const d = r.pick<unknown>([new Int32Array([-1]), new Int32Array([1e9]), new Float32Array(2), new Int32Array(0), [0, 1], detached(new Int32Array([0, 1]))]);
    out.destinations = d;
    // selectDestinations ignores destinations: not a sure rejection
    note(c, `${name}.destinations bad`, [`${name}.destinations`], false);
    return out;
  }
  if (k === 'representatives') {
    out.representatives = r.pick<unknown>([new Int32Array([-5]), new Float32Array(2), 'x']);
    note(c, `${name}.representatives bad`, [`${name}.representatives`, 'representatives'], true);
    return out;
  }
  if (r.chance(0.15)) {
    delete out[k];
    note(c, `${name}.${k} deleted`, [`${name}.${k}`, k], false);
    return out;
  }
  const v = r.pick<unknown>([...NUMBERS, '1', null, {}, [], true, Symbol('v')]);
  out[k] = v;
  note(c, `${name}.${k} = ${String(v)}`, [`${name}.${k}`, k], false);
  return out;
}

// ---------------------------------------------------------------------------------------------
// valid arguments

interface Base {
  B: number;
  H: number;
  W: number;
  P: number;
  C: number;
  heads: number;
  dtype: Dtype;
  T: number;
  planOpts: AnyObj;
}

function base(r: Rng): Base {
  const B = r.int(1, 2);
  const H = r.int(2, 6);
  const W = r.int(2, 6);
  const P = r.chance(0.3) ? r.int(1, 3) : 0;
  const heads = r.pick([1, 2, 4]);
  const C = heads * r.pick([1, 2, 4]);
  const dtype = r.pick<Dtype>(['float32', 'float32', 'float16', 'bfloat16']);
  const region = r.pick<AnyObj | undefined>([undefined, { kind: 'tile', th: 2, tw: 2 }, { kind: 'stripe', rows: 1 }, { kind: 'global' }]);
  const planOpts: AnyObj = { grid: [H, W], ratio: r.pick([0, 0.25, 0.5, 0.75]) };
  if (P) planOpts.prefix = P;
  if (region) planOpts.region = region;
  if (r.chance(0.2)) planOpts.tau = r.pick([Infinity, 10]);
  if (r.chance(0.2)) planOpts.shareBatch = true;
  return { B, H, W, P, C, heads, dtype, T: P + H * W, planOpts };
}

const PLAN_KEYS = ['grid', 'ratio', 'region', 'tau', 'prefix', 'shareBatch', 'similarity', 'backend', 'destinations'];

async function validPlan(r: Rng, b: Base): Promise<toma.Plan> {
  return toma.computePlan(tensor(r, [b.B, b.T, b.C], 'float32'), { ...b.planOpts } as unknown as toma.PlanOptions);
}

/** A plan argument: valid (from x), or a foreign / fake one. */
async function planArg(c: Ctx, b: Base, mutate: boolean): Promise<unknown> {
  const r = c.r;
  if (!mutate) return validPlan(r, b);
  switch (r.int(0, 5)) {
    case 0: {
      note(c, 'plan = junk', ['plan'], true);
      return junk(r);
    }
    case 1: {
      note(c, 'plan = fake object', ['plan'], true);
      return { K: 1, B: b.B, N: b.H * b.W, prefix: b.P, grid: [b.H, b.W], destinations: new Int32Array(1), matrices: () => [] };
    }
    case 2: {
      note(c, 'plan = Object.create(Plan.prototype)', ['plan'], true);
      return Object.create(toma.Plan.prototype);
    }
    case 3: {
      note(c, 'plan = proxy of a plan', ['plan'], true);
      return new Proxy(await validPlan(r, b), {});
    }
    default: {
      // a plan of another shape
      const o = base(r);
      note(c, 'plan from another shape', ['plan', 'shape', 'x', 'y', 'q'], false);
      return validPlan(r, o);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// builders per function

type Builder = (c: Ctx) => Promise<Omit<FuzzCase, 'seed' | 'mutations' | 'names' | 'mustReject'>>;

function pickMutations(r: Rng, slots: number): boolean[] {
  const m = new Array(slots).fill(false);
  if (r.chance(0.08)) return m; // a valid call
  const count = r.chance(0.8) ? 1 : 2;
  for (let i = 0; i < count; i++) m[r.int(0, slots - 1)] = true;
  return m;
}

const planFns: Record<string, Builder> = {
  async selectDestinations(c) {
    const b = base(c.r);
    const [mx, mo] = pickMutations(c.r, 2);
    let x: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let o: unknown = b.planOpts;
    if (mx) x = mutateTensor(c, x as toma.Tensor, 'x');
    if (mo) o = mutateOptions(c, b.planOpts, 'options', PLAN_KEYS);
    return { fn: 'selectDestinations', family: 'op', args: [x, o], run: () => toma.selectDestinations(x as never, o as never) };
  },
  async computePlan(c) {
    const b = base(c.r);
    const [mx, mo] = pickMutations(c.r, 2);
    let x: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let o: unknown = b.planOpts;
    if (mx) x = mutateTensor(c, x as toma.Tensor, 'x');
    if (mo) o = mutateOptions(c, b.planOpts, 'options', PLAN_KEYS);
    return { fn: 'computePlan', family: 'op', args: [x, o], run: () => toma.computePlan(x as never, o as never) };
  },
  async merge(c) {
    const b = base(c.r);
    const [mx, mp] = pickMutations(c.r, 2);
    let x: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    const plan = await planArg(c, b, mp);
    if (mx) x = mutateTensor(c, x as toma.Tensor, 'x');
    return { fn: 'merge', family: 'op', args: [x], run: () => toma.merge(x as never, plan as never) };
  },
  async unmerge(c) {
    const b = base(c.r);
    const [my, mp] = pickMutations(c.r, 2);
    const plan = await planArg(c, b, mp);
    const K = mp ? b.H * b.W : (plan as toma.Plan).K;
    let y: unknown = tensor(c.r, [b.B, b.P + K, b.C], b.dtype);
    if (my) y = mutateTensor(c, y as toma.Tensor, 'y');
    return { fn: 'unmerge', family: 'op', args: [y], run: () => toma.unmerge(y as never, plan as never) };
  },
  async attention(c) {
    const b = base(c.r);
    const Tk = c.r.chance(0.5) ? b.T : c.r.int(1, 9);
    const [mq, mk, mv, mo] = pickMutations(c.r, 4);
    let q: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let k: unknown = tensor(c.r, [b.B, Tk, b.C], b.dtype);
    let v: unknown = tensor(c.r, [b.B, Tk, b.C], b.dtype);
    let o: unknown = { heads: b.heads };
    if (mq) q = mutateTensor(c, q as toma.Tensor, 'q');
    if (mk) k = mutateTensor(c, k as toma.Tensor, 'k');
    if (mv) v = mutateTensor(c, v as toma.Tensor, 'v');
    if (mo) o = mutateOptions(c, { heads: b.heads, scale: 0.5 }, 'options', ['heads', 'scale', 'backend']);
    return { fn: 'attention', family: 'op', args: [q, k, v, o], run: () => toma.attention(q as never, k as never, v as never, o as never) };
  },
  async mergeAttentionUnmerge(c) {
    const b = base(c.r);
    const [mq, mk, mv, mp, mo] = pickMutations(c.r, 5);
    let q: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let k: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let v: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    const plan = await planArg(c, b, mp);
    let o: unknown = { heads: b.heads };
    if (mq) q = mutateTensor(c, q as toma.Tensor, 'q');
    if (mk) k = mutateTensor(c, k as toma.Tensor, 'k');
    if (mv) v = mutateTensor(c, v as toma.Tensor, 'v');
    if (mo)
      o = mutateOptions(c, { heads: b.heads, scale: 0.5, mergeQueries: true, proportional: false }, 'options', [
        'heads', 'scale', 'mergeQueries', 'proportional', 'backend',
      ]);
    return {
      fn: 'mergeAttentionUnmerge', family: 'op', args: [q, k, v, o],
      run: () => toma.mergeAttentionUnmerge(q as never, k as never, v as never, plan as never, o as never),
    };
  },
  async assignmentPlan(c) {
    const b = base(c.r);
    const N = b.H * b.W;
    const K = c.r.int(1, N);
    const a = new Int32Array(b.B * N);
    for (let i = 0; i < a.length; i++) a[i] = i % N < K ? i % N : c.r.int(0, K - 1);
    const [ma, mo] = pickMutations(c.r, 2);
    let arg: unknown = a;
    let o: unknown = { grid: [b.H, b.W], K, prefix: b.P };
    if (ma) {
      const choice = c.r.int(0, 4);
      if (choice === 0) arg = junk(c.r);
      else if (choice === 1) arg = a.subarray(0, Math.max(0, a.length - 1));
      else if (choice === 2) (arg = a.slice()), ((arg as Int32Array)[0] = c.r.pick([-1, K, 2 ** 31 - 1]));
      else if (choice === 3) arg = detached(a.slice());
      else arg = Float32Array.from(a);
      note(c, `assignment mutation ${choice}`, ['assignment'], true);
    }
    if (mo) o = mutateOptions(c, o as AnyObj, 'options', ['grid', 'K', 'prefix', 'representatives']);
    return { fn: 'assignmentPlan', family: 'op', args: [arg, o], run: () => toma.assignmentPlan(arg as never, o as never) };
  },
  async tomesdPlan(c) {
    const b = base(c.r);
    const [mx, mo] = pickMutations(c.r, 2);
    let x: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let o: unknown = { grid: [b.H, b.W], ratio: c.r.pick([0, 0.25, 0.5]), prefix: b.P, seed: c.r.int(0, 1000) };
    if (mx) x = mutateTensor(c, x as toma.Tensor, 'x');
    if (mo) o = mutateOptions(c, o as AnyObj, 'options', ['grid', 'ratio', 'prefix', 'sx', 'sy', 'random', 'seed']);
    return { fn: 'tomesdPlan', family: 'op', args: [x, o], run: () => toma.tomesdPlan(x as never, o as never) };
  },
};

const PLAN_GETTERS = ['K', 'B', 'N', 'prefix', 'grid', 'ratio', 'tau', 'hard', 'region', 'shareBatch', 'bytes', 'destinations'];

const memberFns: Record<string, Builder> = {
  async 'plan.matrices'(c) {
    const b = base(c.r);
    const plan = await validPlan(c.r, b);
    const arg = c.r.chance(0.2) ? c.r.int(0, b.B - 1) : c.r.pick<unknown>([...NUMBERS, b.B, '0', null, {}, 1n]);
    note(c, `matrices(${String(arg)})`, ['matrices', 'b'], false);
    return { fn: 'plan.matrices', family: 'plan', args: [], run: () => plan.matrices(arg as never) };
  },
  async 'plan.members'(c) {
    const b = base(c.r);
    const plan = await validPlan(c.r, b);
    const key = c.r.pick(PLAN_GETTERS);
    const thisArg = c.r.pick<() => unknown>([() => plan, () => ({}), () => Object.create(toma.Plan.prototype), () => toma.Plan.prototype, () => null, () => new Proxy(plan, {})])();
    const getter = Object.getOwnPropertyDescriptor(toma.Plan.prototype, key)?.get;
    note(c, `Plan.${key} on ${thisArg === plan ? 'a plan' : 'a foreign this'}`, [key, 'Plan'], thisArg !== plan);
    return {
      fn: 'plan.members', family: 'plan', args: [],
      run: () => {
        if (!getter) throw new Error(`no getter Plan.${key}`);
        return getter.call(thisArg);
      },
    };
  },
  async 'plan.destinationsReuse'(c) {
    // plan.destinations of one plan fed to computePlan of another shape
    const b = base(c.r);
    const plan = await validPlan(c.r, b);
    const o = base(c.r);
    const x = tensor(c.r, [o.B, o.T, o.C], 'float32');
    const opts = { ...o.planOpts, destinations: plan.destinations };
    note(c, 'destinations from another plan', ['options.destinations', 'destinations'], false);
    return { fn: 'plan.destinationsReuse', family: 'plan', args: [x, opts], run: () => toma.computePlan(x, opts as never) };
  },
};

const processorFns: Record<string, Builder> = {
  async createProcessor(c) {
    const o: AnyObj = { ratio: 0.5, destinationInterval: 10, weightInterval: 5, method: 'toma', dense: ['a'], region: { kind: 'tile', th: 2, tw: 2 }, tau: 100, seed: 1 };
    const mut = c.r.chance(0.92);
    let opts: unknown = o;
    if (mut) {
      if (c.r.chance(0.15)) {
        opts = { ...o, [c.r.pick(['ratio', 'bogus', 'method', 'dense', 'group', 'seed', 'maxRatio'])]: c.r.pick<unknown>(['x', -1, 1, NaN, {}, [1], null]) };
        note(c, 'createProcessor(option of the wrong kind)', ['options'], false);
      } else {
        opts = mutateOptions(c, o, 'options', ['ratio', 'destinationInterval', 'weightInterval', 'method', 'dense', 'region', 'tau', 'seed', 'maxRatio', 'proportional', 'shareBatch', 'backend', 'group']);
      }
    }
    return { fn: 'createProcessor', family: 'processor', args: [opts], run: () => toma.createProcessor(opts as never) };
  },
  async 'processor.beginStep'(c) {
    const p = toma.createProcessor({ ratio: 0.5 });
    const step = c.r.chance(0.2) ? c.r.int(0, 50) : c.r.pick<unknown>([...NUMBERS, '3', null, undefined, {}]);
    note(c, `beginStep(${String(step)})`, ['step'], false);
    return { fn: 'processor.beginStep', family: 'processor', args: [], run: () => p.beginStep(step as never) };
  },
  async 'processor.attention'(c) {
    const b = base(c.r);
    const method = c.r.pick(['toma', 'toma', 'tomesd', 'todo'] as const);
    const p = toma.createProcessor({ ratio: method === 'tomesd' ? 0.5 : 0.5, method, region: b.planOpts.region as never });
    p.beginStep(c.r.int(0, 12));
    const [mq, mk, mv, mc] = pickMutations(c.r, 4);
    let q: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let k: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let v: unknown = tensor(c.r, [b.B, b.T, b.C], b.dtype);
    let call: unknown = { block: 'blk', grid: [b.H, b.W], heads: b.heads, prefix: b.P };
    if (mq) q = mutateTensor(c, q as toma.Tensor, 'q');
    if (mk) k = mutateTensor(c, k as toma.Tensor, 'k');
    if (mv) v = mutateTensor(c, v as toma.Tensor, 'v');
    if (mc) call = mutateOptions(c, call as AnyObj, 'call', ['block', 'grid', 'heads', 'prefix', 'scale']);
    // processor errors name the op-level argument: options.grid for call.grid, etc.
    c.names.push('options', 'x');
    return { fn: 'processor.attention', family: 'processor', args: [q, k, v, call], run: () => p.attention(q as never, k as never, v as never, call as never) };
  },
};

// ---------------------------------------------------------------------------------------------
// onnx

const FIXTURES = path.join(__dirname, '..', '..', 'models', 'fixtures');
const MODELS = ['sd_transformer_32x32.onnx', 'sd_transformer_64x64.onnx', 'flux_joint.onnx', 'sd_transformer_32x32_mha.onnx'];
let tmpRoot: string | undefined;

export function fuzzTmpRoot(): string {
  if (!tmpRoot) tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'toma-fuzz-'));
  return tmpRoot;
}

export function cleanupTmp(): void {
  if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true });
  tmpRoot = undefined;
}

/** A model file for the case: a copy, truncated, byte-corrupted, empty, missing its external data, or no file. */
function modelFile(c: Ctx, dir: string): { file: string; broken: boolean } {
  const r = c.r;
  const kind = r.int(0, 7);
  if (kind === 0) {
    const file = path.join(dir, 'ext.onnx');
    fs.copyFileSync(path.join(FIXTURES, 'sd_transformer_32x32_ext.onnx'), file);
    note(c, 'external data file missing', [file, 'data', 'external'], false);
    return { file, broken: true };
  }
  if (kind === 1) {
    const file = path.join(dir, 'missing.onnx');
    note(c, 'no such file', [file, 'path'], true);
    return { file, broken: true };
  }
  if (kind === 2) {
    note(c, 'path is a directory', [dir, 'path'], true);
    return { file: dir, broken: true };
  }
  const src = fs.readFileSync(path.join(FIXTURES, r.pick(MODELS)));
  const file = path.join(dir, 'model.onnx');
  let bytes: Buffer = src;
  if (kind === 3) {
    bytes = src.subarray(0, r.int(0, src.length - 1));
    note(c, `truncated to ${bytes.length}`, [file], bytes.length < 64);
  } else if (kind === 4 || kind === 5) {
    bytes = Buffer.from(src);
    const flips = r.int(1, 40);
    // corrupt the skeleton near the start more often than the payload
    for (let i = 0; i < flips; i++) bytes[r.chance(0.7) ? r.int(0, Math.min(bytes.length - 1, 4096)) : r.int(0, bytes.length - 1)] = r.int(0, 255);
    note(c, `${flips} bytes corrupted`, [file], false);
  } else if (kind === 6) {
    bytes = Buffer.alloc(r.pick([0, 1, 7, 100]), r.int(0, 255));
    note(c, `junk file of ${bytes.length} bytes`, [file], true);
  } else {
    note(c, 'valid copy', [file], false);
  }
  fs.writeFileSync(file, bytes);
  return { file, broken: kind !== 7 };
}

function listDir(d: string): string[] {
  try {
    return fs.readdirSync(d).sort();
  } catch {
    return [];
  }
}

const onnxFns: Record<string, Builder> = {
  async 'onnx.inspect'(c) {
    const dir = fs.mkdtempSync(path.join(fuzzTmpRoot(), 'i-'));
    let arg: unknown = modelFile(c, dir).file;
    if (c.r.chance(0.1)) {
      arg = junk(c.r);
      note(c, 'path = junk', ['path'], true);
    }
    return { fn: 'onnx.inspect', family: 'onnx', args: [], run: () => toma.onnx.inspect(arg as never) };
  },
  async 'onnx.patchModel'(c) {
    const dir = fs.mkdtempSync(path.join(fuzzTmpRoot(), 'p-'));
    const { file } = modelFile(c, dir);
    const outDir = fs.mkdtempSync(path.join(fuzzTmpRoot(), 'po-'));
    let out: unknown = path.join(outDir, 'patched.onnx');
    const roll = c.r.int(0, 9);
    if (roll === 0) {
      out = file;
      note(c, 'outPath = inPath', ['outPath', 'overwrite'], true);
    } else if (roll === 1) {
      out = path.join(outDir, 'no', 'such', 'dir', 'x.onnx');
      note(c, 'outPath in a missing directory', ['outPath', out as string], false);
    } else if (roll === 2) {
      out = junk(c.r);
      note(c, 'outPath = junk', ['outPath', 'inPath'], true);
    }
    let opts: unknown = { ratio: 0.5 };
    if (c.r.chance(0.3)) opts = mutateOptions(c, { ratio: 0.5 }, 'options', ['ratio', 'region', 'tau', 'grid']);
    const before = listDir(outDir);
    const inBytes = fs.existsSync(file) && fs.statSync(file).isFile() ? fs.readFileSync(file) : undefined;
    return {
      fn: 'onnx.patchModel', family: 'onnx', args: [],
      run: () => toma.onnx.patchModel(file, out as never, opts as never),
      after: ({ ok }) => {
        const now = listDir(outDir);
        const tmp = now.filter((f) => f.endsWith('.tmp'));
        if (tmp.length) return `temporary files left in the output directory: ${tmp.join(', ')}`;
        if (!ok && now.join('/') !== before.join('/')) return `a failed patchModel left files behind: ${now.join(', ')}`;
        if (inBytes && !inBytes.equals(fs.readFileSync(file))) return 'patchModel changed its input file';
        return undefined;
      },
    };
  },
  async 'onnx.createSession'(c) {
    const dir = fs.mkdtempSync(path.join(fuzzTmpRoot(), 's-'));
    const { file } = modelFile(c, dir);
    let opts: unknown = { ratio: 0.5 };
    c.names.push('options'); // a model whose grid the graph cannot tell: options.grid is required
    if (c.r.chance(0.3)) opts = mutateOptions(c, { ratio: 0.5, mode: 'segments' }, 'options', ['ratio', 'mode', 'grid', 'region', 'tau']);
    return {
      fn: 'onnx.createSession', family: 'onnx', args: [],
      run: async () => {
        const s = await toma.onnx.createSession(file, opts as never);
        await (s as { release(): Promise<void> | void }).release();
        return s;
      },
    };
  },
};

// Weights: ops dominate; onnx cases are slower (file copies, onnxruntime) and rarer.
const TABLE: Array<[string, Builder, number]> = [
  ...Object.entries(planFns).map(([k, f]) => [k, f, 10] as [string, Builder, number]),
  ...Object.entries(memberFns).map(([k, f]) => [k, f, 4] as [string, Builder, number]),
  ['createProcessor', processorFns.createProcessor, 4],
  ['processor.beginStep', processorFns['processor.beginStep'], 2],
  ['processor.attention', processorFns['processor.attention'], 8],
  ['onnx.inspect', onnxFns['onnx.inspect'], 2],
  ['onnx.patchModel', onnxFns['onnx.patchModel'], 1.2],
  ['onnx.createSession', onnxFns['onnx.createSession'], 0.6],
];
const TOTAL = TABLE.reduce((a, t) => a + t[2], 0);

export const FUNCTIONS = TABLE.map((t) => t[0]);

export async function makeCase(seed: number): Promise<FuzzCase> {
  const r = new Rng(seed);
  let u = r.next() * TOTAL;
  let entry = TABLE[TABLE.length - 1];
  for (const t of TABLE) {
    if (u < t[2]) {
      entry = t;
      break;
    }
    u -= t[2];
  }
  const c: Ctx = { r, mutations: [], names: [], mustReject: false };
  const made = await entry[1](c);
  return { seed, ...made, mutations: c.mutations, names: c.names, mustReject: c.mustReject };
}
