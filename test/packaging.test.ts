// The packed tarball installs into an empty project on a machine that has never seen the registry
// (--offline, an empty npm cache of its own) and loads its prebuilt binary with no compiler:
// cmake, nvcc, make and the C/C++ compilers are shadowed by failing stubs on PATH.
//
// Nothing is compiled and nothing is fetched here. The tarball is packed from a staging copy of
// exactly the files `npm pack` would take from this tree; its prebuilt binary is the one the other
// tests load (prebuilds/ after `npm run prebuilds`, else the build of `npm install`). The
// tarball's dependencies are packed from this project's node_modules, at the versions the
// lockfile installed.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addonPath } from '../lib/index';

const root = path.join(__dirname, '..');
const platformDir = path.join('prebuilds', `${process.platform}-${process.arch}`);

function sh(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): string {
  const r = spawnSync(cmd, args, { ...opts, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout + r.stderr;
}

// npm's own variables of the `npm test` that runs jest (npm_config_*, npm_package_*, the
// lifecycle's) would leak the outer project's settings into the inner installs.
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'TOMA_ADDON' && k !== 'INIT_CWD') env[k] = v;
  return { ...env, ...extra };
}

interface PackEntry {
  filename: string;
  files: { path: string }[];
}

function stagePackage(work: string): string {
  const listing = JSON.parse(sh('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, env: cleanEnv() })) as PackEntry[];
  const stage = path.join(work, 'stage');
  for (const { path: f } of listing[0].files) {
    fs.mkdirSync(path.dirname(path.join(stage, f)), { recursive: true });
    fs.copyFileSync(path.join(root, f), path.join(stage, f));
  }
  const binary = path.join(stage, platformDir, 'toma.node');
  if (!fs.existsSync(binary)) {
    const built = addonPath();
    if (!built) throw new Error('no toma.node to package: run npm install (or npm run prebuilds) first');
    fs.mkdirSync(path.dirname(binary), { recursive: true });
    fs.copyFileSync(built, binary);
  }
  return stage;
}

function packDependencies(work: string): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const deps = path.join(work, 'deps');
  fs.mkdirSync(deps);
  const dirs = Object.keys(pkg.dependencies).map((name) => path.join(root, 'node_modules', name));
  const packed = JSON.parse(
    sh('npm', ['pack', ...dirs, '--ignore-scripts', '--json', '--pack-destination', deps], { cwd: work, env: cleanEnv() }),
  ) as PackEntry[];
  return packed.map((p) => path.join(deps, p.filename));
}

describe('npm pack + offline install', () => {
  let work: string;
  let stage: string;
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'toma-pack-'));
    stage = stagePackage(work);
  }, 120000);
  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('the prebuilt binary has no CUDA shared-library dependency', () => {
    const needed = execFileSync('readelf', ['-d', path.join(stage, platformDir, 'toma.node')], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('NEEDED'));
    expect(needed.length).toBeGreaterThan(0);
    for (const l of needed) expect(l).not.toMatch(/libcuda|libcudart|libcublas|libnvrtc/);
  });

  test('installs from the tarball with an empty cache, offline, without compiling, and answers backend()', () => {
    const out = sh('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: stage, env: cleanEnv() });
    const tgz = fs.readdirSync(work).find((f) => f.endsWith('.tgz'));
    expect(tgz).toBeDefined();
    expect(out).toMatch(/prebuilds\/linux-x64\/toma\.node/);
    const deps = packDependencies(work);

    const stubs = path.join(work, 'stubs');
    fs.mkdirSync(stubs);
    for (const tool of ['cmake', 'nvcc', 'make', 'gcc', 'g++', 'cc', 'c++', 'clang', 'clang++']) {
      fs.writeFileSync(path.join(stubs, tool), `#!/bin/sh\necho "stub ${tool}: compiling is not allowed here" >&2\nexit 97\n`);
      fs.chmodSync(path.join(stubs, tool), 0o755);
    }
    const app = path.join(work, 'app');
    const cache = path.join(work, 'empty-npm-cache');
    fs.mkdirSync(app);
    fs.mkdirSync(cache);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const env = cleanEnv({ PATH: `${stubs}:${process.env.PATH}`, CC: 'false', CXX: 'false', npm_config_cache: cache });
    const log = sh(
      'npm',
      ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', path.join(work, tgz!), ...deps],
      { cwd: app, env },
    );
    expect(log).toMatch(/toma: using prebuilds\/linux-x64\/toma\.node/);
    // npm's notice that the app has not reviewed toma's install script is the app's policy, not
    // ours; a config key npm does not know (the old .npmrc) is ours.
    expect(log).not.toMatch(/Unknown (env|project|user|builtin) config/);
    const pkg = path.join(app, 'node_modules', 'toma');
    expect(fs.existsSync(path.join(pkg, 'build'))).toBe(false);

    const cjs = sh(process.execPath, ['-e', "const t=require('toma');console.log(JSON.stringify({b:t.backend(),p:t.addonPath()}))"], {
      cwd: app,
      env,
    });
    const r = JSON.parse(cjs.trim()) as { b: { name: string; cudaCompiled: boolean }; p: string };
    expect(['cpu', 'cuda']).toContain(r.b.name);
    expect(r.p).toContain(path.join('node_modules', 'toma', 'prebuilds'));
    const esm = sh(
      process.execPath,
      ['--input-type=module', '-e', "import { backend, computePlan } from 'toma'; console.log(backend().name, typeof computePlan)"],
      { cwd: app, env },
    );
    expect(esm.trim()).toMatch(/^(cpu|cuda) function$/);
  }, 300000);
});
