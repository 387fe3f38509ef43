// Finds and loads the compiled addon. Order: TOMA_ADDON (a path to a .node file), the prebuilt
// binary in prebuilds/<platform>-<arch>/, a local build in build/Release or build/Debug, and last
// whatever node-gyp-build resolves (it also looks beside process.execPath, for bundled apps).
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Dtype, RegionMatrices, Region, Tensor } from './types';

export interface NativeBackendInfo {
  cudaCompiled: boolean;
  cudaAvailable: boolean;
  device?: string;
  computeCapability?: string;
  deviceMemory?: number;
  reason?: string;
  driverVersion: number;
  runtimeVersion: number;
  cudaOps: string[];
  cpuIsa: string;
  threads: number;
}

export interface NativePlan {
  readonly K: number;
  readonly B: number;
  readonly N: number;
  readonly prefix: number;
  readonly grid: [number, number];
  readonly ratio: number;
  readonly tau: number;
  readonly hard: boolean;
  readonly region: Region;
  readonly shareBatch: boolean;
  /** Host plus device bytes held. */
  readonly bytes: number;
  /** True when the weights live on the CUDA device (a plan computed there, or used there once). */
  readonly device: boolean;
  readonly destinations: Int32Array;
  matrices(b?: number): RegionMatrices[];
}

export interface NativeDeviceTensor {
  readonly shape: number[];
  readonly dtype: Dtype;
  readonly bytes: number;
  readonly disposed: boolean;
  toHost(): Promise<Tensor>;
  dispose(): void;
}

/** An op's tensor argument: host memory or a DeviceTensor. */
type AnyTensor = Tensor | NativeDeviceTensor;

export interface NativeAddon {
  Plan: { prototype: NativePlan; new (handle: never): NativePlan };
  DeviceTensor: { prototype: NativeDeviceTensor; new (handle: never): NativeDeviceTensor };
  backendInfo(): NativeBackendInfo;
  toDevice(t: Tensor): Promise<NativeDeviceTensor>;
  // A DeviceTensor main input (x, y, q) gives a DeviceTensor result, a host one a host Tensor.
  selectDestinations(x: AnyTensor, o: unknown): Promise<Int32Array>;
  computePlan(x: AnyTensor, o: unknown): Promise<NativePlan>;
  merge(x: AnyTensor, plan: NativePlan, o?: unknown): Promise<AnyTensor>;
  unmerge(y: AnyTensor, plan: NativePlan, o?: unknown): Promise<AnyTensor>;
  attention(q: AnyTensor, k: AnyTensor, v: AnyTensor, o: unknown): Promise<AnyTensor>;
  mergeAttentionUnmerge(q: AnyTensor, k: AnyTensor, v: AnyTensor, plan: NativePlan, o: unknown): Promise<AnyTensor>;
  assignmentPlan(assignment: Int32Array, o: unknown): Promise<NativePlan>;
  tomesdPlan(x: Tensor, o: unknown): Promise<NativePlan>;
}

/** The package root: dist/ (compiled) and lib/ (ts sources under tsx/jest) both sit one below. */
export const packageRoot = path.join(__dirname, '..');

export function addonCandidates(): string[] {
  const list: string[] = [];
  const override = process.env.TOMA_ADDON;
  if (override) list.push(path.resolve(override));
  list.push(path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'toma.node'));
  list.push(path.join(packageRoot, 'build', 'Release', 'toma.node'));
  list.push(path.join(packageRoot, 'build', 'Debug', 'toma.node'));
  return list;
}

let loaded: { addon: NativeAddon; path: string } | undefined;

export function loadAddon(): NativeAddon {
  if (loaded) return loaded.addon;
  const tried: string[] = [];
  const explicit = process.env.TOMA_ADDON;
  for (const file of addonCandidates()) {
    if (!fs.existsSync(file)) {
      if (explicit && file === path.resolve(explicit)) throw new Error(`TOMA_ADDON=${explicit}: no such file`);
      tried.push(`${file} (not found)`);
      continue;
    }
    try {
      const addon = require(file) as NativeAddon;
      loaded = { addon, path: file };
      warnIfStale(file);
      return addon;
    } catch (e) {
      tried.push(`${file} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  try {
    const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
    const file = nodeGypBuild.path(packageRoot);
    const addon = require(file) as NativeAddon;
    loaded = { addon, path: file };
    return addon;
  } catch (e) {
    tried.push(`node-gyp-build: ${(e as Error).message.split('\n')[0]}`);
  }
  throw new Error(
    `toma: could not load its native addon for ${process.platform}-${process.arch}, Node ${process.version}.\n` +
      `Tried:\n  ${tried.join('\n  ')}\n` +
      'Possible solutions:\n' +
      '  - reinstall toma so its prebuilt binary is unpacked: npm install toma\n' +
      '  - build it from source in the package folder: npx cmake-js build (or npx node-gyp rebuild, CPU only)\n' +
      '  - point TOMA_ADDON at a toma.node you built',
  );
}

// The order above is fixed; a developer who rebuilt build/ after `npm run prebuilds` is told
// that the older prebuilt binary is the one in use.
function warnIfStale(file: string): void {
  if (!file.includes(`${path.sep}prebuilds${path.sep}`)) return;
  const local = path.join(packageRoot, 'build', 'Release', 'toma.node');
  try {
    if (fs.statSync(local).mtimeMs > fs.statSync(file).mtimeMs)
      process.emitWarning(`loading ${file} although ${local} is newer; delete prebuilds/ or set TOMA_ADDON`, {
        code: 'TOMA_STALE_PREBUILD',
      });
  } catch {
    // no local build: nothing to compare
  }
}

/** Which file was loaded (for diagnostics); undefined before the first load. */
export function addonPath(): string | undefined {
  return loaded?.path;
}
