// toma.onnx.inspect(path): what the matcher found in a model, per attention block (SPEC section 8),
// plus the boundaries (node and tensor names) that the patching modes build on.
import { matchAttention, reportedKind, type AttentionBlock, type AttentionForm, type Hazard } from './matcher';
import { externalLocations, readModel, type ReadOptions } from './model';

/** One block as SPEC section 8 names it, plus the matcher's detail. */
export interface InspectBlock {
  name: string;
  kind: 'self' | 'cross' | 'joint';
  grid?: [number, number];
  heads: number;
  channels: number;
  patchable: boolean;
  reason?: string;
  /** Joint attention: prefix (text) tokens before the image tokens. */
  prefix?: number;
  headDim: number;
  form: AttentionForm;
  hazards: Hazard[];
  notes: string[];
  /** Text tokens after the image tokens (SD3's joint attention puts the image first). */
  suffix?: number;
  /** One line: what the block is and where its grid comes from, or why toma leaves it alone. */
  summary: string;
  /** Everything the matcher traced: boundaries, streams, projections, core nodes. */
  match: AttentionBlock;
}

/** The block in one line, as `toma inspect` prints it. */
export function summarize(b: AttentionBlock): string {
  const kind = reportedKind(b);
  const shape = `${b.heads || '?'} heads x ${b.headDim || '?'}`;
  if (b.kind === 'cross') return `cross-attention (${shape}): never merged`;
  const where = b.grid
    ? `grid ${b.grid[0]}x${b.grid[1]}`
    : b.gridSource
      ? 'grid from the input shapes at run time'
      : b.tokensInput
        ? `tokens fed as ${b.tokensInput}: grid from the position ids at run time, else a square`
        : 'grid unknown: pass options.grid';
  const count = (b.prefix ?? 0) + (b.suffix ?? 0);
  const text = b.text ? `, ${count || 'the'} text tokens ${b.text} the image` : '';
  const rope = b.boundaries.q.rope ? ', RoPE' : '';
  const form = b.form === 'matmul-softmax' ? '' : `, ${b.form}`;
  const head = `${kind}-attention (${shape}${form}), ${where}${text}${rope}`;
  if (!b.patchable) return `${head}: not patched: ${b.reason ?? 'unknown reason'}`;
  const baked = b.hazards.filter((h) => h.kind === 'baked-sequence-length').length;
  return `${head}: patchable${baked ? ` (${baked} baked sequence lengths rewritten)` : ''}`;
}

export interface InspectReport {
  blocks: InspectBlock[];
  /** Softmax / fused nodes examined and not reported as attention, with the reason. */
  skipped: Array<{ node: string; reason: string }>;
  model: {
    path: string;
    irVersion: number;
    producer: string;
    opsets: Array<{ domain: string; version: number }>;
    nodes: number;
    /** Tensor payload bytes left in the file (never loaded into JavaScript). */
    weightBytesInFile: number;
    /** External data files the model refers to. */
    externalData: string[];
  };
}

export interface InspectOptions extends ReadOptions {
  /**
   * Shapes of the model's inputs (one run's feeds), for models exported with dynamic shapes: with
   * them every block's grid and token count is known, as createSession learns them at run().
   */
  inputShapes?: Record<string, number[]>;
}

export function checkInputShapes(v: unknown): Map<string, number[]> | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new TypeError(`options.inputShapes must be an object { inputName: dims[] }, got ${Array.isArray(v) ? 'an array' : String(v)}`);
  const m = new Map<string, number[]>();
  for (const [k, dims] of Object.entries(v as Record<string, unknown>)) {
    if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d) && d >= 0))
      throw new TypeError(`options.inputShapes.${k} must be an array of integers >= 0, got ${JSON.stringify(dims)}`);
    m.set(k, dims as number[]);
  }
  return m;
}

export async function inspect(path: string, o: InspectOptions = {}): Promise<InspectReport> {
  if (o === null || typeof o !== 'object') throw new TypeError(`options must be an object, got ${String(o)}`);
  const bind = checkInputShapes(o.inputShapes);
  const model = await readModel(path, o);
  if (bind) {
    const names = new Set(model.proto.graph!.input.map((v) => v.name));
    for (const k of bind.keys()) if (!names.has(k)) throw new TypeError(`options.inputShapes.${k}: the model has no input '${k}' (inputs: ${[...names].join(', ')})`);
  }
  const report = matchAttention(model, bind);
  const p = model.proto;
  return {
    blocks: report.blocks.map((b) => ({
      name: b.name,
      kind: reportedKind(b),
      ...(b.grid ? { grid: b.grid } : {}),
      heads: b.heads,
      channels: b.channels,
      patchable: b.patchable,
      ...(b.reason !== undefined ? { reason: b.reason } : {}),
      ...(b.prefix !== undefined ? { prefix: b.prefix } : {}),
      ...(b.suffix ? { suffix: b.suffix } : {}),
      summary: summarize(b),
      headDim: b.headDim,
      form: b.form,
      hazards: b.hazards,
      notes: b.notes,
      match: b,
    })),
    skipped: report.skipped,
    model: {
      path: model.source.path!,
      irVersion: Number(p.irVersion ?? 0n),
      producer: [p.producerName, p.producerVersion].filter(Boolean).join(' '),
      opsets: p.opsetImport.map((x) => ({ domain: x.domain ?? '', version: Number(x.version ?? 0n) })),
      nodes: p.graph?.node.length ?? 0,
      weightBytesInFile: model.elided.bytes,
      externalData: externalLocations(p),
    },
  };
}
