// Child process of the fuzz driver: runs the cases for the seeds it is sent and reports each
// result; a crash of this process (signal, abort, non-zero exit) is the driver's to catch.
import { types } from 'node:util';

import * as toma from '../../lib';
import { OnnxFormatError } from '../../lib/onnx';
import { cleanupTmp, FuzzSentinel, makeCase, type FuzzCase } from './cases';

export type Outcome = 'resolved' | 'rejected';
export interface CaseResult {
  seed: number;
  fn: string;
  outcome: Outcome;
  errorClass?: string;
  /** Failure texts (empty: the case passed). */
  failures: string[];
  /** Kind of allowed error, for the tallies. */
  kind?: string;
  mutations: string[];
}

const CASE_TIMEOUT_MS = Number(process.env.TOMA_FUZZ_CASE_TIMEOUT_MS ?? 20000);

/** Every typed array reachable from the arguments (plain objects / arrays, depth 3, no proxies or getters). */
function typedArrays(v: unknown, out: ArrayBufferView[] = [], depth = 0): ArrayBufferView[] {
  if (depth > 3 || v === null || typeof v !== 'object' || types.isProxy(v)) return out;
  if (ArrayBuffer.isView(v)) {
    out.push(v);
    return out;
  }
  if (Array.isArray(v)) {
    for (const e of v.slice(0, 16)) typedArrays(e, out, depth + 1);
    return out;
  }
  if (Object.getPrototypeOf(v) !== Object.prototype) return out;
  for (const k of Object.keys(v)) {
    const d = Object.getOwnPropertyDescriptor(v, k);
    if (d && 'value' in d) typedArrays(d.value, out, depth + 1);
  }
  return out;
}

function bytesOf(a: ArrayBufferView): Uint8Array | undefined {
  if (a.byteLength === 0 && a.buffer.byteLength === 0) return undefined;
  try {
    return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
  } catch {
    return undefined; // detached
  }
}

function classify(c: FuzzCase, e: unknown): { kind?: string; failure?: string } {
  if (e instanceof FuzzSentinel) return { kind: 'sentinel' };
  const err = e as Error & { code?: unknown };
  const cls = e instanceof Error ? err.constructor.name : typeof e;
  const msg = e instanceof Error ? String(err.message) : String(e);
  const named = () => c.names.length === 0 || c.names.some((n) => msg.includes(n));
  let kind: string | undefined;
  if (e instanceof toma.BackendUnavailableError) kind = 'BackendUnavailableError';
  else if (e instanceof TypeError || e instanceof RangeError) kind = cls === 'TypeError' || cls === 'RangeError' ? cls : err.name;
  else if (c.family === 'onnx') {
    if (e instanceof OnnxFormatError) kind = 'OnnxFormatError';
    else if (e instanceof Error && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code)) kind = `system:${err.code}`;
    else if (e instanceof Error && /never overwrites its input/.test(msg)) kind = 'overwriteRefused';
    else if (e instanceof Error && c.fn === 'onnx.patchModel' && msg.startsWith('outPath: ')) kind = 'outPathRefused';
    else if (e instanceof Error && c.fn === 'onnx.createSession') return { kind: 'ortError' };
  }
  if (!kind) return { failure: `wrong error class ${cls}: ${msg.slice(0, 300)}` };
  if (kind.startsWith('system:') || kind === 'OnnxFormatError' || kind === 'overwriteRefused' || kind === 'outPathRefused') return { kind };
  if (!named()) return { kind, failure: `${cls} message does not name ${JSON.stringify(c.names.slice(0, 6))}: ${msg.slice(0, 300)}` };
  return { kind };
}

async function runOne(seed: number): Promise<CaseResult> {
  let c: FuzzCase;
  try {
    c = await makeCase(seed);
  } catch (e) {
    return { seed, fn: '?', outcome: 'rejected', failures: [`the generator failed: ${(e as Error)?.stack ?? String(e)}`], mutations: [] };
  }
  const arrays = typedArrays(c.args);
  const before = arrays.map(bytesOf);
  let ok = true;
  let error: unknown;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(() => c.run()),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`__timeout__ after ${CASE_TIMEOUT_MS} ms`)), CASE_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    ok = false;
    error = e;
  } finally {
    clearTimeout(timer);
  }
  const failures: string[] = [];
  let kind: string | undefined;
  if (!ok) {
    if (error instanceof Error && error.message.startsWith('__timeout__')) failures.push(`hang: ${error.message}`);
    else {
      const k = classify(c, error);
      kind = k.kind;
      if (k.failure) failures.push(k.failure);
    }
  } else if (c.mustReject) {
    failures.push('resolved although the input is invalid');
  }
  arrays.forEach((a, i) => {
    const b = before[i];
    const now = bytesOf(a);
    if (b && (!now || now.length !== b.length || !Buffer.from(now).equals(Buffer.from(b)))) failures.push(`input array ${i} (${a.constructor.name}) changed`);
  });
  if (c.after) {
    const f = c.after({ ok, error });
    if (f) failures.push(f);
  }
  return {
    seed,
    fn: c.fn,
    outcome: ok ? 'resolved' : 'rejected',
    errorClass: ok ? undefined : error instanceof Error ? error.constructor.name : typeof error,
    kind,
    failures,
    mutations: c.mutations,
  };
}

process.on('message', async (m: { seeds: number[] }) => {
  for (const seed of m.seeds) {
    process.send!({ type: 'start', seed });
    const r = await runOne(seed);
    process.send!({ type: 'result', result: r });
  }
  cleanupTmp();
  process.send!({ type: 'done' }, () => process.exit(0));
});
process.on('exit', cleanupTmp);
