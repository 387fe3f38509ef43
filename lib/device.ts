// Tensors that live on the CUDA device: toDevice() copies a host tensor there once, ops given one
// keep their result there (no copies between ops), and toHost() brings a result back. Host
// tensors work with the CUDA backend too: each op then copies them in and its result out.
import { loadAddon, type NativeDeviceTensor } from './native';
import type { Tensor } from './types';

/**
 * A [B, T, C] tensor in device memory. `dispose()` frees it now (idempotent; ops still running
 * on it keep it until they finish); otherwise the garbage collector frees it eventually.
 */
export type DeviceTensor = NativeDeviceTensor;
// Typed as a constructor (made only by toDevice and the ops) so `r instanceof toma.DeviceTensor`
// narrows a result of the mixed overloads.
export const DeviceTensor = loadAddon().DeviceTensor as unknown as abstract new (handle: never) => DeviceTensor;

export function isDeviceTensor(v: unknown): v is DeviceTensor {
  const ctor = loadAddon().DeviceTensor;
  return typeof ctor === 'function' && v instanceof ctor;
}

/**
 * Copies a host tensor to the CUDA device (off the JavaScript thread). Its values are checked
 * here (NaN or Infinity is a RangeError), so ops on it do not scan it again. Rejects with an
 * Error giving the reason where CUDA is unavailable.
 */
export async function toDevice(t: Tensor): Promise<DeviceTensor> {
  return loadAddon().toDevice(t);
}
