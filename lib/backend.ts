// Backend choice. 'cuda' only when CUDA code is compiled in and a device answers; TOMA_BACKEND
// (cpu | cuda) overrides the default, and asking for CUDA where there is none is an error.
import { loadAddon } from './native';
import type { BackendInfo, BackendName } from './types';

export class BackendUnavailableError extends Error {
  readonly code = 'TOMA_BACKEND_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

function envBackend(): BackendName | undefined {
  const v = process.env.TOMA_BACKEND;
  if (v === undefined || v === '') return undefined;
  if (v !== 'cpu' && v !== 'cuda') throw new RangeError(`TOMA_BACKEND must be 'cpu' or 'cuda', got '${v}'`);
  return v;
}

export function backend(): BackendInfo {
  const info = loadAddon().backendInfo();
  const forced = envBackend();
  if (forced === 'cpu') return { name: 'cpu', cudaCompiled: info.cudaCompiled, reason: 'TOMA_BACKEND=cpu' };
  if (info.cudaAvailable) return { name: 'cuda', device: info.device, cudaCompiled: true };
  if (forced === 'cuda')
    throw new BackendUnavailableError(`TOMA_BACKEND=cuda, but CUDA is unavailable: ${info.reason ?? 'unknown reason'}`);
  return { name: 'cpu', cudaCompiled: info.cudaCompiled, reason: info.reason };
}

/**
 * The backend an op runs on. An explicit request (argument or TOMA_BACKEND) is honoured or is an
 * error; the default is CUDA where it is available and the op has a CUDA kernel, else the CPU.
 */
export function opBackend(op: string, requested: unknown): BackendName {
  if (requested !== undefined && requested !== 'cpu' && requested !== 'cuda')
    throw new TypeError(`options.backend must be 'cpu' or 'cuda', got ${String(requested)}`);
  const info = loadAddon().backendInfo();
  const want = (requested as BackendName | undefined) ?? envBackend();
  if (want === 'cpu') return 'cpu';
  if (want === 'cuda') {
    if (!info.cudaAvailable)
      throw new BackendUnavailableError(`${op}: the CUDA backend was requested but is unavailable: ${info.reason ?? 'unknown reason'}`);
    if (!info.cudaOps.includes(op))
      throw new BackendUnavailableError(`${op}: this build has no CUDA kernel for ${op}; use { backend: 'cpu' }`);
    return 'cuda';
  }
  return info.cudaAvailable && info.cudaOps.includes(op) ? 'cuda' : 'cpu';
}
