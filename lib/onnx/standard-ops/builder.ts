// A small emitter of ONNX nodes for the standard-ops rewrite: unique names, constants (kept in the
// root graph's initializers so If/Loop bodies can read them from the outer scope), attributes,
// and subgraphs. Everything it adds is in the default ONNX domain.
import { create } from '@bufbuild/protobuf';
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  NodeProtoSchema,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from '../gen/onnx_pb';

export const DT = TensorProto_DataType;
export type ElemType = TensorProto_DataType;

export type AttrValue = number | number[] | string | GraphProto | { float: number } | { floats: number[] } | { tensor: TensorProto };
export type Attrs = Record<string, AttrValue>;

/** Hands out names no tensor or node of the model uses yet. */
export class Names {
  private readonly used = new Set<string>();
  private readonly counters = new Map<string, number>();
  constructor(existing: Iterable<string> = []) {
    for (const n of existing) this.used.add(n);
  }
  reserve(name: string): void {
    this.used.add(name);
  }
  has(name: string): boolean {
    return this.used.has(name);
  }
  /** `base` itself if free, else base_1, base_2, ... */
  fresh(base: string): string {
    if (!this.used.has(base)) {
      this.used.add(base);
      return base;
    }
    let i = this.counters.get(base) ?? 1;
    while (this.used.has(`${base}_${i}`)) i++;
    this.counters.set(base, i + 1);
    const n = `${base}_${i}`;
    this.used.add(n);
    return n;
  }
}

export function attribute(name: string, v: AttrValue): AttributeProto {
  const T = AttributeProto_AttributeType;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use { float } for non-integers`);
    return create(AttributeProtoSchema, { name, type: T.INT, i: BigInt(v) });
  }
  if (Array.isArray(v)) return create(AttributeProtoSchema, { name, type: T.INTS, ints: v.map(BigInt) });
  if (typeof v === 'string') return create(AttributeProtoSchema, { name, type: T.STRING, s: new TextEncoder().encode(v) });
  if ('float' in v) return create(AttributeProtoSchema, { name, type: T.FLOAT, f: v.float });
  if ('floats' in v) return create(AttributeProtoSchema, { name, type: T.FLOATS, floats: v.floats });
  if ('tensor' in v) return create(AttributeProtoSchema, { name, type: T.TENSOR, t: v.tensor });
  return create(AttributeProtoSchema, { name, type: T.GRAPH, g: v });
}

export function tensorProto(name: string, dt: ElemType, dims: number[], values: number[] | ArrayLike<number>): TensorProto {
  const count = dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) throw new Error(`constant ${name}: ${values.length} values for dims [${dims}]`);
  let raw: Uint8Array;
  if (dt === DT.INT64) {
    const a = new BigInt64Array(count);
    for (let i = 0; i < count; i++) a[i] = BigInt(values[i]);
    raw = new Uint8Array(a.buffer);
  } else if (dt === DT.FLOAT) {
    raw = new Uint8Array(Float32Array.from(values).buffer);
  } else if (dt === DT.DOUBLE) {
    raw = new Uint8Array(Float64Array.from(values).buffer);
  } else if (dt === DT.BOOL) {
    raw = Uint8Array.from(values, (v) => (v ? 1 : 0));
  } else if (dt === DT.INT32) {
    raw = new Uint8Array(Int32Array.from(values).buffer);
  } else {
    throw new Error(`constant ${name}: unsupported data type ${dt}`);
  }
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: dt, rawData: raw });
}

export function valueInfo(name: string, dt: ElemType, dims?: Array<number | string>): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: dt,
          shape: dims
            ? create(TensorShapeProtoSchema, {
                dim: dims.map((d) =>
                  create(TensorShapeProto_DimensionSchema, {
                    value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : { case: 'dimParam', value: d },
                  }),
                ),
              })
            : undefined,
        }),
      },
    }),
  });
}

/** Shared by a root builder and its subgraph builders. */
interface Shared {
  names: Names;
  /** Initializers added to the root graph. */
  initializers: TensorProto[];
  constCache: Map<string, string>;
  /** Op types emitted (for the report and the web-compatibility test). */
  ops: Set<string>;
  nodeCount: { n: number };
}

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  private readonly shared: Shared;

  constructor(
    names: Names | Shared,
    /** Prefix of node and tensor names. */
    public scope = 'toma',
  ) {
    this.shared = names instanceof Names ? { names, initializers: [], constCache: new Map(), ops: new Set(), nodeCount: { n: 0 } } : names;
  }

  get names(): Names {
    return this.shared.names;
  }
  get initializers(): TensorProto[] {
    return this.shared.initializers;
  }
  get ops(): ReadonlySet<string> {
    return this.shared.ops;
  }
  get nodeCount(): number {
    return this.shared.nodeCount.n;
  }

  /** A builder for an If branch or Loop body: same names and constants, its own nodes. */
  sub(scope = this.scope): GraphBuilder {
    return new GraphBuilder(this.shared, scope);
  }

  /** A builder emitting into the same node list under another scope. */
  within(scope: string): GraphBuilder {
    const b = new GraphBuilder(this.shared, scope);
    (b as unknown as { nodes: NodeProto[] }).nodes = this.nodes;
    return b;
  }

  fresh(base: string): string {
    return this.names.fresh(`${this.scope}/${base}`);
  }

  /** Emits one node; returns its output names (fresh unless given). */
  node(opType: string, inputs: string[], attrs: Attrs = {}, outputs: number | string[] = 1): string[] {
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(`${opType}_out`)) : outputs;
    const name = this.fresh(opType);
    this.nodes.push(
      create(NodeProtoSchema, {
        name,
        opType,
        domain: '',
        input: inputs,
        output: outs,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    this.shared.ops.add(opType);
    this.shared.nodeCount.n++;
    return outs;
  }

  /** One-output node. */
  op(opType: string, inputs: string[], attrs: Attrs = {}, output?: string): string {
    return this.node(opType, inputs, attrs, output ? [output] : 1)[0];
  }

  /** A constant in the root graph's initializers, shared by identical requests. */
  constant(dt: ElemType, dims: number[], values: number[] | ArrayLike<number>, base = 'const'): string {
    const key = `${dt}|${dims.join(',')}|${Array.prototype.join.call(values, ',')}`;
    const hit = this.shared.constCache.get(key);
    if (hit) return hit;
    const name = this.names.fresh(`toma/const/${base}`);
    this.shared.initializers.push(tensorProto(name, dt, dims, values));
    this.shared.constCache.set(key, name);
    return name;
  }

  i64(values: number[], dims: number[] = [values.length], base = 'i64'): string {
    return this.constant(DT.INT64, dims, values, base);
  }
  scalarI64(v: number, base = 'i64'): string {
    return this.constant(DT.INT64, [], [v], base);
  }
  f32(values: number[], dims: number[] = [values.length], base = 'f32'): string {
    return this.constant(DT.FLOAT, dims, values, base);
  }
  scalarF32(v: number, base = 'f32'): string {
    return this.constant(DT.FLOAT, [], [v], base);
  }
  /** A float constant of the given float type (FLOAT or DOUBLE). */
  real(dt: ElemType, values: number[], dims: number[] = [values.length], base = 'real'): string {
    return this.constant(dt, dims, values, base);
  }
  bool(values: number[], dims: number[], base = 'mask'): string {
    return this.constant(DT.BOOL, dims, values, base);
  }

  /** Closes a subgraph: its nodes, typed inputs and outputs. */
  graph(name: string, outputs: ValueInfoProto[], inputs: ValueInfoProto[] = []): GraphProto {
    return create(GraphProtoSchema, { name, node: this.nodes, input: inputs, output: outputs });
  }
}

/** Names a subgraph reads from its enclosing scopes (inputs not produced inside, recursively). */
export function outerScopeInputs(g: GraphProto): Set<string> {
  const produced = new Set<string>();
  for (const i of g.input) produced.add(i.name);
  for (const t of g.initializer) produced.add(t.name);
  for (const n of g.node) for (const o of n.output) if (o) produced.add(o);
  const out = new Set<string>();
  for (const n of g.node) {
    for (const i of n.input) if (i && !produced.has(i)) out.add(i);
    for (const a of n.attribute) {
      const subs = [...(a.g ? [a.g] : []), ...a.graphs];
      for (const s of subs) for (const x of outerScopeInputs(s)) if (!produced.has(x)) out.add(x);
    }
  }
  for (const o of g.output) if (!produced.has(o.name)) out.add(o.name);
  return out;
}

/** Every input a node reads, including what its subgraphs read from the outer scope. */
export function nodeReads(n: NodeProto): string[] {
  const r = n.input.filter((x) => x);
  for (const a of n.attribute) {
    const subs = [...(a.g ? [a.g] : []), ...a.graphs];
    for (const s of subs) r.push(...outerScopeInputs(s));
  }
  return r;
}

/**
 * Topological order, stable: among nodes whose inputs are ready, the one with the smallest key
 * (original position, new nodes placed near their anchors) comes first.
 */
export function topoSort(nodes: NodeProto[], keyOf: (n: NodeProto, i: number) => number): NodeProto[] {
  const producerOf = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => o && producerOf.set(o, i)));
  const indeg = new Array<number>(nodes.length).fill(0);
  const users: number[][] = nodes.map(() => []);
  nodes.forEach((n, i) => {
    const seen = new Set<number>();
    for (const t of nodeReads(n)) {
      const p = producerOf.get(t);
      if (p === undefined || p === i || seen.has(p)) continue;
      seen.add(p);
      users[p].push(i);
      indeg[i]++;
    }
  });
  const keys = nodes.map((n, i) => keyOf(n, i));
  // binary heap of ready node indices by (key, index)
  const heap: number[] = [];
  const less = (a: number, b: number) => keys[a] < keys[b] || (keys[a] === keys[b] && a < b);
  const push = (x: number) => {
    heap.push(x);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(heap[i], heap[p])) break;
      [heap[i], heap[p]] = [heap[p], heap[i]];
      i = p;
    }
  };
  const pop = () => {
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l], heap[m])) m = l;
        if (r < heap.length && less(heap[r], heap[m])) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    }
    return top;
  };
  indeg.forEach((d, i) => d === 0 && push(i));
  const out: NodeProto[] = [];
  while (heap.length) {
    const i = pop();
    out.push(nodes[i]);
    for (const u of users[i]) if (--indeg[u] === 0) push(u);
  }
  if (out.length !== nodes.length) {
    const stuck = nodes.filter((_, i) => indeg[i] > 0).slice(0, 3).map((n) => n.name || n.opType);
    throw new Error(`the patched graph has a cycle (nodes ${stuck.join(', ')} ...); this is a bug in the standard-ops rewrite`);
  }
  return out;
}
