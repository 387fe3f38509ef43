// Light static shape inference and small-value folding over one graph, in node order (ONNX graphs
// are topologically sorted). Dims are numbers, symbols (dim_param names, or products of them such as
// "batch*4"), or undefined (unknown). Values are folded only for short vectors (shape arithmetic:
// Shape -> Gather -> Unsqueeze -> Concat -> Reshape, and runtime scale chains such as
// Shape -> Slice -> Cast -> Sqrt -> Reciprocal -> Sqrt). Anything not understood is left unknown;
// nothing here throws on an unfamiliar graph.
import type { NodeProto, TypeProto } from './gen/onnx_pb';
import { attr, attrInt, attrInts, tensorValues, type GraphIndex } from './graph';

export type Dim = number | string | undefined;
export type Shape = Dim[];

const MAX_VALUE_LENGTH = 16;

const SAME_SHAPE = new Set([
  'Identity', 'Cast', 'CastLike', 'Relu', 'LeakyRelu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Erf', 'Gelu',
  'FastGelu', 'Sqrt', 'Reciprocal', 'Neg', 'Abs', 'Exp', 'Log', 'Clip', 'Softmax', 'LogSoftmax', 'Dropout', 'Elu',
  'Selu', 'Softplus', 'Mish', 'Floor', 'Ceil', 'Round', 'Sign', 'Not', 'Sin', 'Cos', 'IsNaN',
  'LayerNormalization', 'InstanceNormalization', 'BatchNormalization', 'GroupNormalization',
  'SimplifiedLayerNormalization', 'RMSNormalization', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization',
  'LpNormalization', 'MeanVarianceNormalization', 'QuickGelu', 'BiasGelu',
]);
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Less', 'Greater', 'And', 'Or', 'Mod', 'PRelu', 'Sum', 'Mean']);
const REDUCE = new Set(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL2', 'ReduceSumSquare']);

// ---------------------------------------------------------------------------------------------
// symbolic products

interface Term {
  num: number;
  syms: string[];
}

function toTerm(d: Dim): Term | undefined {
  if (typeof d === 'number') return { num: d, syms: [] };
  if (typeof d === 'string') {
    let num = 1;
    const syms: string[] = [];
    for (const f of d.split('*')) {
      if (/^-?\d+$/.test(f)) num *= Number(f);
      else syms.push(f);
    }
    return { num, syms };
  }
  return undefined;
}

function fromTerm(t: Term): Dim {
  if (!t.syms.length) return t.num;
  const syms = [...t.syms].sort();
  return t.num === 1 ? syms.join('*') : [...syms, String(t.num)].join('*');
}

export function mulDims(a: Dim, b: Dim): Dim {
  const x = toTerm(a);
  const y = toTerm(b);
  if (!x || !y) return undefined;
  return fromTerm({ num: x.num * y.num, syms: [...x.syms, ...y.syms] });
}

export function divDims(a: Dim, b: Dim): Dim {
  const x = toTerm(a);
  const y = toTerm(b);
  if (!x || !y || y.num === 0) return undefined;
  const syms = [...x.syms];
  for (const s of y.syms) {
    const i = syms.indexOf(s);
    if (i < 0) return undefined;
    syms.splice(i, 1);
  }
  if (x.num % y.num !== 0) return undefined;
  return fromTerm({ num: x.num / y.num, syms });
}

function product(dims: Dim[]): Dim {
  let p: Dim = 1;
  for (const d of dims) p = mulDims(p, d);
  return p;
}

// ---------------------------------------------------------------------------------------------

export class ShapeInfo {
  readonly shapes = new Map<string, Shape>();
  /** Folded values of short tensors (rank <= 1; scalars as one-element arrays). */
  readonly values = new Map<string, Dim[]>();
  /** Which folded values were scalars (rank 0). */
  private readonly scalars = new Set<string>();
  /** Which folded values are floating point (so Div does not truncate). */
  private readonly floats = new Set<string>();
  /** ONNX element types (TensorProto.DataType), where known. */
  readonly types = new Map<string, number>();
  /** Shapes of the elements of sequence values (SequenceEmpty / SequenceInsert chains). */
  private readonly sequences = new Map<string, Shape[]>();

  /**
   * `bind`: concrete shapes of graph inputs (the feeds of one run). With it every shape that
   * follows from the inputs by ONNX semantics becomes concrete, and the graph's own value_info,
   * whose dims may be symbols the exporter made up, only fills what inference leaves unknown.
   */
  constructor(
    readonly g: GraphIndex,
    bind?: ReadonlyMap<string, readonly number[]>,
  ) {
    for (const v of g.graph.input) {
      const b = bind?.get(v.name);
      this.setType(v.name, v.type);
      if (b) this.shapes.set(v.name, [...b]);
    }
    const declared = [...g.graph.valueInfo, ...g.graph.output];
    if (!bind) for (const v of declared) if (!this.shapes.has(v.name)) this.setType(v.name, v.type);
    for (const t of g.graph.initializer) {
      if (g.inputs.has(t.name)) continue;
      this.shapes.set(t.name, t.dims.map(Number));
      this.setConstValue(t.name);
    }
    for (const t of g.graph.initializer) if (!this.types.has(t.name)) this.types.set(t.name, t.dataType);
    for (const n of g.graph.node) {
      try {
        this.infer(n);
      } catch {
        // unknown stays unknown
      }
      try {
        this.inferType(n);
      } catch {
        // unknown stays unknown
      }
    }
    if (bind) {
      for (const v of declared) {
        const mine = this.shapes.get(v.name);
        if (mine && mine.every((d) => typeof d === 'number')) continue;
        const saved = new Map([[v.name, mine]]);
        this.shapes.delete(v.name);
        this.setType(v.name, v.type);
        const theirs = this.shapes.get(v.name);
        const prev = saved.get(v.name);
        if (prev && theirs && prev.length === theirs.length) this.shapes.set(v.name, prev.map((d, i) => (typeof d === 'number' ? d : theirs[i])));
        else if (prev && !theirs) this.shapes.set(v.name, prev);
      }
    }
  }

  /** Element type of a tensor (TensorProto.DataType), when known. */
  elemType(name: string): number | undefined {
    return this.types.get(name);
  }

  private inferType(n: NodeProto): void {
    const set = (t: number | undefined, i = 0) => {
      if (t !== undefined && n.output[i] && !this.types.has(n.output[i])) this.types.set(n.output[i], t);
    };
    const first = n.input[0] ? this.types.get(n.input[0]) : undefined;
    if (n.domain !== '' && n.domain !== 'ai.onnx') {
      if (n.domain === 'com.microsoft' && ['MultiHeadAttention', 'Attention', 'SkipLayerNormalization', 'SimplifiedLayerNormalization', 'SkipSimplifiedLayerNormalization', 'BiasGelu', 'FastGelu', 'QuickGelu', 'GroupNorm', 'BiasAdd'].includes(n.opType))
        set(first);
      return;
    }
    switch (n.opType) {
      case 'Constant': {
        const t = this.g.constTensor(n.output[0]);
        set(t?.dataType);
        return;
      }
      case 'Cast':
        set(attrInt(n, 'to'));
        return;
      case 'CastLike':
        set(n.input[1] ? this.types.get(n.input[1]) : undefined);
        return;
      case 'Shape':
      case 'Size':
      case 'NonZero':
      case 'ArgMax':
      case 'ArgMin':
        set(7);
        return;
      case 'Equal':
      case 'Less':
      case 'LessOrEqual':
      case 'Greater':
      case 'GreaterOrEqual':
      case 'Not':
      case 'And':
      case 'Or':
      case 'Xor':
      case 'IsNaN':
      case 'IsInf':
        set(9);
        return;
      case 'ConstantOfShape':
        set(attr(n, 'value')?.t?.dataType ?? 1);
        return;
      case 'Where':
        set(n.input[1] ? this.types.get(n.input[1]) : undefined);
        return;
      case 'Split':
        for (let i = 0; i < n.output.length; i++) set(first, i);
        return;
      case 'If':
      case 'Loop':
      case 'Scan':
        return;
      default:
        set(first);
    }
  }

  shape(name: string): Shape | undefined {
    return this.shapes.get(name);
  }

  value(name: string): Dim[] | undefined {
    return this.values.get(name);
  }

  /** A folded scalar numeric value (a one-element tensor). */
  scalar(name: string): number | undefined {
    const v = this.values.get(name);
    return v && v.length === 1 && typeof v[0] === 'number' ? v[0] : undefined;
  }

  private setType(name: string, type: TypeProto | undefined): void {
    if (type?.value.case !== 'tensorType') return;
    if (type.value.value.elemType && !this.types.has(name)) this.types.set(name, type.value.value.elemType);
    const shp = type.value.value.shape;
    if (!shp) return;
    this.shapes.set(
      name,
      shp.dim.map((d) => (d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : undefined)),
    );
  }

  private setConstValue(name: string): void {
    const dims = this.g.constDims(name);
    if (!dims || dims.length > 1) return;
    const v = this.g.constValues(name, MAX_VALUE_LENGTH);
    if (v) {
      this.values.set(name, v);
      if (dims.length === 0) this.scalars.add(name);
      const dt = this.g.constTensor(name)?.dataType;
      if (dt === 1 || dt === 10 || dt === 11 || dt === 16) this.floats.add(name);
    }
  }

  private setValue(name: string, v: Dim[] | undefined, scalar = false): void {
    if (!v || v.length > MAX_VALUE_LENGTH) return;
    this.values.set(name, v);
    if (scalar) this.scalars.add(name);
    if (!this.shapes.has(name)) this.shapes.set(name, scalar ? [] : [v.length]);
  }

  private isScalar(name: string): boolean {
    return this.scalars.has(name);
  }

  private infer(n: NodeProto): void {
    const op = n.opType;
    const S = (i: number) => (n.input[i] ? this.shapes.get(n.input[i]) : undefined);
    const V = (i: number) => (n.input[i] ? this.values.get(n.input[i]) : undefined);
    const out = n.output[0];
    const set = (s: Shape | undefined, i = 0) => {
      if (s && n.output[i] && !this.shapes.has(n.output[i])) this.shapes.set(n.output[i], s);
    };
    if (op === 'Constant') {
      this.shapes.set(out, this.g.constDims(out) ?? []);
      this.setConstValue(out);
      return;
    }
    if (SAME_SHAPE.has(op)) {
      set(S(0));
      if (op === 'Identity' || op === 'Cast' || op === 'CastLike' || op === 'Neg' || op === 'Sqrt' || op === 'Reciprocal' || op === 'Floor' || op === 'Ceil') {
        const v = V(0);
        if (v) {
          const f = (x: Dim): Dim => {
            if (op === 'Identity' || op === 'Cast' || op === 'CastLike') return x;
            if (typeof x !== 'number') return undefined;
            if (op === 'Neg') return -x;
            if (op === 'Sqrt') return Math.sqrt(x);
            if (op === 'Reciprocal') return 1 / x;
            if (op === 'Floor') return Math.floor(x);
            return Math.ceil(x);
          };
          this.setValue(out, v.map(f), this.isScalar(n.input[0]));
          const to = attrInt(n, 'to');
          const isFloat =
            op === 'Sqrt' || op === 'Reciprocal' || (op === 'Cast' ? to === 1 || to === 10 || to === 11 || to === 16 : this.floats.has(n.input[0]));
          if (isFloat) this.floats.add(out);
        }
      }
      return;
    }
    if (BROADCAST.has(op)) {
      const shapes = n.input.map((_, i) => S(i));
      // An operand whose shape nothing here can infer (a Loop's output, say: torch exports Flux's
      // rotary tables that way) is taken to broadcast into the known one, as a per-token table or
      // a scale does: the known dims other than 1 are then the output's, by broadcasting's rule.
      const known = shapes.filter((x): x is Shape => !!x);
      if (known.length && known.length < shapes.length && ['Add', 'Sub', 'Mul', 'Div'].includes(op)) {
        const widest = known.reduce((a, b) => (b.length > a.length ? b : a));
        set(broadcast(known)?.map((d, i) => (d === 1 && widest[i] === 1 ? undefined : d)));
      } else set(broadcast(shapes));
      if (['Add', 'Sub', 'Mul', 'Div'].includes(op) && n.input.length === 2) {
        const a = V(0);
        const b = V(1);
        if (a && b && (a.length === b.length || a.length === 1 || b.length === 1)) {
          const len = Math.max(a.length, b.length);
          const r: Dim[] = [];
          const isFloat = this.floats.has(n.input[0]) || this.floats.has(n.input[1]);
          for (let i = 0; i < len; i++) r.push(arith(op, a[a.length === 1 ? 0 : i], b[b.length === 1 ? 0 : i], isFloat));
          this.setValue(out, r, this.isScalar(n.input[0]) && this.isScalar(n.input[1]));
          if (isFloat) this.floats.add(out);
        }
      }
      return;
    }
    switch (op) {
      case 'Shape': {
        const s = S(0);
        if (!s) return;
        const rank = s.length;
        let start = attrInt(n, 'start', 0)!;
        let end = attrInt(n, 'end', rank)!;
        if (start < 0) start += rank;
        if (end < 0) end += rank;
        const v = s.slice(Math.max(0, start), Math.min(rank, end));
        this.shapes.set(out, [v.length]);
        this.setValue(out, v);
        return;
      }
      case 'Transpose': {
        const s = S(0);
        if (!s) return;
        const perm = attrInts(n, 'perm') ?? s.map((_, i) => s.length - 1 - i);
        set(perm.map((p) => s[p]));
        return;
      }
      case 'Reshape': {
        const s = S(0);
        const t = V(1);
        if (!t) {
          const ts = S(1);
          if (ts && typeof ts[0] === 'number') set(new Array(ts[0]).fill(undefined));
          return;
        }
        const allowZero = attrInt(n, 'allowzero', 0) === 1;
        const r: Dim[] = t.map((d, i) => (d === 0 && !allowZero ? s?.[i] : d));
        const neg = r.indexOf(-1);
        if (neg >= 0) {
          const others = r.filter((_, i) => i !== neg);
          r[neg] = s && others.every((d) => d !== undefined) ? divDims(product(s), product(others)) : undefined;
        }
        set(r);
        // a short vector reshaped to a vector (torch's shape arithmetic) keeps its values
        const v = V(0);
        if (v && r.length === 1 && r[0] === v.length) this.setValue(out, v);
        return;
      }
      case 'Equal': {
        set(broadcast([S(0), S(1)]));
        const a = V(0);
        const b = V(1);
        if (a && b && (a.length === b.length || a.length === 1 || b.length === 1)) {
          const len = Math.max(a.length, b.length);
          const r: Dim[] = [];
          for (let i = 0; i < len; i++) {
            const x = a[a.length === 1 ? 0 : i];
            const y = b[b.length === 1 ? 0 : i];
            // a symbolic dim is never negative: it differs from every negative constant
            if (typeof x === 'number' && typeof y === 'number') r.push(x === y ? 1 : 0);
            else if ((typeof x === 'string' && typeof y === 'number' && y < 0) || (typeof y === 'string' && typeof x === 'number' && x < 0)) r.push(0);
            else if (typeof x === 'string' && x === y) r.push(1);
            else r.push(undefined);
          }
          this.setValue(out, r, this.isScalar(n.input[0]) && this.isScalar(n.input[1]));
        }
        return;
      }
      case 'Where': {
        set(broadcast([S(0), S(1), S(2)]));
        const [c, a, b] = [V(0), V(1), V(2)];
        if (c && a && b) {
          const len = Math.max(c.length, a.length, b.length);
          if ([c, a, b].every((x) => x.length === len || x.length === 1)) {
            const at = (x: Dim[], i: number) => x[x.length === 1 ? 0 : i];
            const r: Dim[] = [];
            for (let i = 0; i < len; i++) {
              const k = at(c, i);
              r.push(k === undefined || typeof k !== 'number' ? undefined : k ? at(a, i) : at(b, i));
            }
            this.setValue(out, r);
            if (this.floats.has(n.input[1])) this.floats.add(out);
          }
        }
        return;
      }
      case 'Flatten': {
        const s = S(0);
        if (!s) return;
        let axis = attrInt(n, 'axis', 1)!;
        if (axis < 0) axis += s.length;
        set([product(s.slice(0, axis)), product(s.slice(axis))]);
        return;
      }
      case 'MatMul': {
        const a = S(0);
        const b = S(1);
        if (!a || !b) return;
        if (a.length >= 2 && b.length >= 2) {
          const batch = broadcast([a.slice(0, -2), b.slice(0, -2)]) ?? [];
          set([...batch, a[a.length - 2], b[b.length - 1]]);
        } else if (a.length >= 2 && b.length === 1) set(a.slice(0, -1));
        else if (a.length === 1 && b.length >= 2) set([...b.slice(0, -2), b[b.length - 1]]);
        return;
      }
      case 'Gemm': {
        const a = S(0);
        const b = S(1);
        if (!a || !b) return;
        set([attrInt(n, 'transA', 0) ? a[1] : a[0], attrInt(n, 'transB', 0) ? b[0] : b[1]]);
        return;
      }
      case 'Conv':
      case 'MaxPool':
      case 'AveragePool':
      case 'LpPool': {
        const s = S(0);
        if (!s || s.length < 3) return;
        const w = op === 'Conv' ? S(1) : undefined;
        const kernel = attrInts(n, 'kernel_shape') ?? (w ? w.slice(2) : undefined);
        const k = s.length - 2;
        const strides = attrInts(n, 'strides') ?? new Array(k).fill(1);
        const dil = attrInts(n, 'dilations') ?? new Array(k).fill(1);
        const pads = attrInts(n, 'pads') ?? new Array(2 * k).fill(0);
        const autoPad = attr(n, 'auto_pad')?.s ? new TextDecoder().decode(attr(n, 'auto_pad')!.s) : 'NOTSET';
        const ceil = attrInt(n, 'ceil_mode', 0) === 1;
        const spatial: Dim[] = [];
        for (let i = 0; i < k; i++) {
          const x = s[2 + i];
          const kk = kernel?.[i];
          if (typeof x !== 'number' || typeof kk !== 'number') {
            spatial.push(undefined);
            continue;
          }
          if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
            spatial.push(Math.ceil(x / strides[i]));
            continue;
          }
          const eff = dil[i] * (kk - 1) + 1;
          const padded = x + (autoPad === 'VALID' ? 0 : pads[i] + pads[i + k]) - eff;
          spatial.push((ceil ? Math.ceil(padded / strides[i]) : Math.floor(padded / strides[i])) + 1);
        }
        set([s[0], op === 'Conv' ? w?.[0] : s[1], ...spatial]);
        return;
      }
      case 'GlobalAveragePool':
      case 'GlobalMaxPool': {
        const s = S(0);
        if (s) set([s[0], s[1], ...s.slice(2).map(() => 1)]);
        return;
      }
      case 'Concat': {
        const shapes = n.input.map((_, i) => S(i));
        let axis = attrInt(n, 'axis', 0)!;
        const first = shapes.find((s) => s);
        if (first) {
          if (axis < 0) axis += first.length;
          const r = [...first];
          r[axis] = shapes.every((s) => s) ? shapes.reduce<Dim>((acc, s) => addDims(acc, s![axis]), 0) : undefined;
          set(r);
        }
        const vals = n.input.map((_, i) => V(i));
        if (vals.every((v) => v)) this.setValue(out, vals.flatMap((v) => v!));
        return;
      }
      case 'Unsqueeze':
      case 'Squeeze': {
        const s = S(0);
        const axes = attrInts(n, 'axes') ?? (n.input[1] ? (V(1) as number[] | undefined) : undefined);
        const v = V(0);
        if (op === 'Unsqueeze') {
          if (s && axes && axes.every((a) => typeof a === 'number')) {
            const rank = s.length + axes.length;
            const norm = axes.map((a) => (a < 0 ? a + rank : a));
            const r: Dim[] = [];
            let j = 0;
            for (let i = 0; i < rank; i++) r.push(norm.includes(i) ? 1 : s[j++]);
            set(r);
          }
          if (v && this.isScalar(n.input[0])) this.setValue(out, v);
        } else {
          if (s) {
            const norm = axes ? axes.map((a) => (a < 0 ? a + s.length : a)) : s.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0);
            set(s.filter((_, i) => !norm.includes(i)));
            if (v && v.length === 1 && s.length === 1) this.setValue(out, v, true);
          }
        }
        return;
      }
      case 'Gather': {
        const s = S(0);
        const is = S(1);
        let axis = attrInt(n, 'axis', 0)!;
        if (s && is) {
          if (axis < 0) axis += s.length;
          set([...s.slice(0, axis), ...is, ...s.slice(axis + 1)]);
        }
        const v = V(0);
        const idx = V(1);
        if (v && idx && axis === 0 && idx.every((i) => typeof i === 'number')) {
          this.setValue(out, (idx as number[]).map((i) => v[i < 0 ? i + v.length : i]), this.isScalar(n.input[1]));
        }
        return;
      }
      case 'Slice': {
        const s = S(0);
        if (!s) return;
        const starts = attrInts(n, 'starts') ?? (V(1) as number[] | undefined);
        const ends = attrInts(n, 'ends') ?? (V(2) as number[] | undefined);
        const axes = attrInts(n, 'axes') ?? (n.input[3] ? (V(3) as number[] | undefined) : undefined) ?? starts?.map((_, i) => i);
        const steps = (n.input[4] ? (V(4) as number[] | undefined) : undefined) ?? starts?.map(() => 1);
        if (!starts || !ends || !axes || !steps) {
          set(s.map(() => undefined));
          return;
        }
        const r = [...s];
        const v = V(0);
        let vr = v ? [...v] : undefined;
        for (let i = 0; i < axes.length; i++) {
          const a = axes[i] < 0 ? axes[i] + s.length : axes[i];
          const d = s[a];
          if (typeof d !== 'number' || typeof starts[i] !== 'number' || typeof ends[i] !== 'number') {
            r[a] = undefined;
            vr = undefined;
            continue;
          }
          const [b, e, st] = sliceRange(d, starts[i], ends[i], steps[i]);
          r[a] = Math.max(0, Math.ceil((e - b) / st));
          if (vr && a === 0 && st === 1) vr = vr.slice(b, e);
          else vr = undefined;
        }
        set(r);
        if (vr) this.setValue(out, vr);
        return;
      }
      case 'Split': {
        const s = S(0);
        if (!s) return;
        let axis = attrInt(n, 'axis', 0)!;
        if (axis < 0) axis += s.length;
        const split = attrInts(n, 'split') ?? (n.input[1] ? (V(1) as number[] | undefined) : undefined);
        const parts = n.output.length;
        for (let i = 0; i < parts; i++) {
          const r = [...s];
          r[axis] = split ? split[i] : typeof s[axis] === 'number' && (s[axis] as number) % parts === 0 ? (s[axis] as number) / parts : undefined;
          set(r, i);
        }
        return;
      }
      case 'Expand': {
        const s = S(0);
        const t = V(1);
        // numpy broadcasting of the input's shape with the target's (a target dim 1 keeps the input's)
        if (s && t) set(broadcast([s, t]));
        return;
      }
      case 'ConstantOfShape': {
        const t = V(0);
        if (!t) return;
        set([...t]);
        const count = t.every((d) => typeof d === 'number') ? (t as number[]).reduce((a, b) => a * b, 1) : undefined;
        if (count !== undefined && t.length <= 1 && count <= MAX_VALUE_LENGTH) {
          const vt = attr(n, 'value')?.t;
          const v = vt ? (this.g.constValues(n.output[0]) === undefined ? tensorFill(vt) : undefined) : 0;
          if (v !== undefined) this.setValue(out, new Array(count).fill(v));
        }
        return;
      }
      case 'Resize':
      case 'Upsample': {
        const s = S(0);
        if (!s) return;
        const sizes = op === 'Resize' && n.input[3] ? V(3) : undefined;
        if (sizes && sizes.length === s.length) {
          set([...sizes]);
          return;
        }
        // the default domain's Upsample reads scales from an input (or, before opset 9, float
        // attributes); onnxruntime's nchwc Upsample has integer scales
        const scales = op === 'Resize' ? (n.input[2] ? V(2) : undefined) : (V(1) ?? (n.domain === 'com.microsoft.nchwc' ? attrInts(n, 'scales') : attr(n, 'scales')?.floats));
        if (scales && scales.length === s.length)
          set(s.map((d, i) => (typeof d === 'number' && typeof scales[i] === 'number' ? Math.floor(d * (scales[i] as number)) : scales[i] === 1 ? d : undefined)));
        else set(s.map(() => undefined));
        return;
      }
      case 'Pad': {
        const s = S(0);
        if (!s) return;
        const pads = attrInts(n, 'pads') ?? (n.input[1] ? (V(1) as number[] | undefined) : undefined);
        const axes = n.input[3] ? (V(3) as number[] | undefined) : s.map((_, i) => i);
        if (!pads || !axes || pads.length !== 2 * axes.length) {
          set(s.map(() => undefined));
          return;
        }
        const r = [...s];
        axes.forEach((a, i) => {
          const ax = a < 0 ? a + s.length : a;
          const d = r[ax];
          r[ax] = typeof d === 'number' && typeof pads[i] === 'number' ? d + pads[i] + pads[i + axes.length] : undefined;
        });
        set(r);
        return;
      }
      case 'Tile': {
        const s = S(0);
        const reps = V(1);
        if (s && reps && reps.length === s.length) set(s.map((d, i) => mulDims(d, reps[i])));
        return;
      }
      case 'Range': {
        const [a, b, c] = [V(0), V(1), V(2)].map((v) => (v && v.length === 1 ? v[0] : undefined));
        if (typeof a === 'number' && typeof b === 'number' && typeof c === 'number' && c !== 0) {
          const len = Math.max(Math.ceil((b - a) / c), 0);
          set([len]);
          if (len <= MAX_VALUE_LENGTH) this.setValue(out, Array.from({ length: len }, (_, i) => a + i * c));
        } else set([undefined]);
        return;
      }
      case 'Einsum': {
        const eq = attr(n, 'equation')?.s;
        if (!eq) return;
        const r = einsumShape(new TextDecoder().decode(eq), n.input.map((_, i) => S(i)));
        if (r) set(r);
        return;
      }
      case 'ReorderInput': {
        // com.microsoft.nchwc (onnxruntime's level-'all' CPU layout): channels padded to the block size
        const x = S(0);
        if (!x || n.domain !== 'com.microsoft.nchwc') return;
        set(attrInt(n, 'channels_last', 0) === 1 ? [x[0], x[3], x[1], x[2]].map((d, i) => (i === 1 ? undefined : d)) : x.map((d, i) => (i === 1 ? undefined : d)));
        return;
      }
      case 'ReorderOutput': {
        const x = S(0);
        if (!x || n.domain !== 'com.microsoft.nchwc') return;
        const c = attrInt(n, 'channels');
        set(attrInt(n, 'channels_last', 0) === 1 ? [x[0], x[2], x[3], c] : [x[0], c, ...x.slice(2)]);
        return;
      }
      case 'SplitToSequence': {
        const x = S(0);
        if (!x) return;
        let axis = attrInt(n, 'axis', 0)!;
        if (axis < 0) axis += x.length;
        const d = x[axis];
        const split = n.input[1] ? V(1) : undefined;
        const part = (len: Dim, keep: boolean): Shape => {
          const r = [...x];
          if (keep) r[axis] = len;
          else r.splice(axis, 1);
          return r;
        };
        if (!n.input[1]) {
          if (typeof d !== 'number') return;
          const keep = attrInt(n, 'keepdims', 1) === 1;
          this.sequences.set(out, Array.from({ length: d }, () => part(1, keep)));
        } else if (split && split.every((v) => typeof v === 'number')) {
          const sizes = split as number[];
          if (S(1)?.length === 0 && typeof d === 'number') {
            const c = sizes[0];
            const parts: Shape[] = [];
            for (let o = 0; o < d; o += c) parts.push(part(Math.min(c, d - o), true));
            this.sequences.set(out, parts);
          } else this.sequences.set(out, sizes.map((len) => part(len, true)));
        }
        return;
      }
      case 'SequenceAt': {
        const seq = this.sequences.get(n.input[0]);
        const i = V(1)?.[0];
        if (seq && typeof i === 'number') set(seq[i < 0 ? i + seq.length : i]);
        return;
      }
      case 'SequenceEmpty':
        this.sequences.set(out, []);
        return;
      case 'SequenceConstruct': {
        const parts = n.input.map((_, i) => S(i));
        if (parts.every((p) => p)) this.sequences.set(out, parts as Shape[]);
        return;
      }
      case 'SequenceInsert': {
        const seq = this.sequences.get(n.input[0]);
        const t = S(1);
        const pos = n.input[2] ? V(2)?.[0] : undefined;
        if (!seq || !t || (n.input[2] && typeof pos !== 'number')) return;
        const r = [...seq];
        if (typeof pos === 'number') r.splice(pos < 0 ? pos + r.length : pos, 0, t);
        else r.push(t);
        this.sequences.set(out, r);
        return;
      }
      case 'ConcatFromSequence': {
        const seq = this.sequences.get(n.input[0]);
        if (!seq || !seq.length) return;
        const rank = seq[0].length;
        let axis = attrInt(n, 'axis', 0)!;
        if (attrInt(n, 'new_axis', 0) === 1) {
          if (axis < 0) axis += rank + 1;
          const r = [...seq[0]];
          r.splice(axis, 0, seq.length);
          set(seq.every((x) => x.length === rank) ? r : undefined);
        } else {
          if (axis < 0) axis += rank;
          const r = [...seq[0]];
          r[axis] = seq.reduce<Dim>((acc, x) => addDims(acc, x[axis]), 0);
          set(seq.every((x) => x.length === rank) ? r : undefined);
        }
        return;
      }
      case 'MultiHeadAttention': {
        const q = S(0);
        const v = S(2);
        if (q && q.length === 3) set([q[0], q[1], v && v.length === 3 ? v[2] : v && v.length === 4 ? mulDims(v[1], v[3]) : q[2]]);
        return;
      }
      case 'Attention': {
        const x = S(0);
        const w = S(1);
        if (x && w) set([x[0], x[1], typeof w[1] === 'number' ? w[1] / 3 : undefined]);
        return;
      }
      default:
        if (REDUCE.has(op)) {
          const s = S(0);
          if (!s) return;
          const axes = attrInts(n, 'axes') ?? (n.input[1] ? (V(1) as number[] | undefined) : undefined);
          const keep = attrInt(n, 'keepdims', 1) === 1;
          const norm = (axes ?? s.map((_, i) => i)).map((a) => (a < 0 ? a + s.length : a));
          set(keep ? s.map((d, i) => (norm.includes(i) ? 1 : d)) : s.filter((_, i) => !norm.includes(i)));
        }
    }
  }
}

/** Output shape of an Einsum (explicit or implicit output; '...' broadcast). */
function einsumShape(equation: string, inputs: Array<Shape | undefined>): Shape | undefined {
  const eq = equation.replace(/\s+/g, '');
  const [lhs, rhs] = eq.split('->');
  const terms = lhs.split(',');
  if (terms.length !== inputs.length || inputs.some((x) => !x)) return undefined;
  const dims = new Map<string, Dim>();
  const counts = new Map<string, number>();
  let ellipsis: Shape | undefined;
  for (let t = 0; t < terms.length; t++) {
    const shape = inputs[t]!;
    const term = terms[t];
    const [head, tail] = term.includes('...') ? term.split('...') : [term, undefined];
    const explicit = head.length + (tail?.length ?? 0);
    if (tail === undefined ? explicit !== shape.length : explicit > shape.length) return undefined;
    const ell = tail === undefined ? [] : shape.slice(head.length, shape.length - tail.length);
    if (tail !== undefined) ellipsis = broadcast([ellipsis ?? [], ell]);
    const letters = [...head, ...(tail ?? '')];
    const at = [...head].map((_, i) => i).concat([...(tail ?? '')].map((_, i) => shape.length - (tail?.length ?? 0) + i));
    letters.forEach((c, i) => {
      const d = shape[at[i]];
      const prev = dims.get(c);
      if (prev === undefined || prev === 1) dims.set(c, d);
      counts.set(c, (counts.get(c) ?? 0) + 1);
    });
  }
  const out = rhs ?? [...counts.keys()].filter((c) => counts.get(c) === 1).sort().join('');
  const r: Dim[] = [];
  const [oh, ot] = out.includes('...') ? out.split('...') : [out, undefined];
  for (const c of oh) r.push(dims.get(c));
  if (ot !== undefined || (rhs === undefined && ellipsis)) r.push(...(ellipsis ?? []));
  for (const c of ot ?? '') r.push(dims.get(c));
  return r;
}

/** The single value a ConstantOfShape fills with. */
function tensorFill(t: import('./gen/onnx_pb').TensorProto): number | undefined {
  const v = tensorValues(t, undefined, 1);
  return v && v.length === 1 ? v[0] : undefined;
}

function sliceRange(d: number, start: number, end: number, step: number): [number, number, number] {
  const clamp = (x: number) => Math.max(0, Math.min(d, x < 0 ? x + d : x));
  if (step <= 0) return [0, 0, 1];
  return [clamp(start), clamp(end > Number.MAX_SAFE_INTEGER ? d : end), step];
}

function addDims(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  return undefined;
}

function arith(op: string, a: Dim, b: Dim, isFloat: boolean): Dim {
  if (typeof a === 'number' && typeof b === 'number') {
    switch (op) {
      case 'Add': return a + b;
      case 'Sub': return a - b;
      case 'Mul': return a * b;
      case 'Div': return isFloat ? a / b : b !== 0 ? Math.trunc(a / b) : undefined;
    }
  }
  if (op === 'Mul') return mulDims(a, b);
  if (op === 'Div') return divDims(a, b);
  return undefined;
}

export function broadcast(shapes: Array<Shape | undefined>): Shape | undefined {
  if (shapes.some((s) => !s)) return undefined;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const r: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    let unknown = false;
    for (const s of shapes) {
      const x = s![s!.length - rank + i];
      if (x === undefined && s!.length - rank + i >= 0) {
        unknown = true;
        continue;
      }
      if (x === undefined || x === 1) continue;
      d = x;
    }
    r.push(unknown && d === 1 ? undefined : d);
  }
  return r;
}
