// The packed tarball installs offline into an empty project and loads its prebuilt binary with no
// compiler: cmake, nvcc, make and the C/C++ compilers are shadowed by failing stubs on PATH.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.join(__dirname, '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'toma.node');

function sh(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): string {
  const r = spawnSync(cmd, args, { ...opts, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout + r.stderr;
}

// .ci/run makes the prebuilt binary before the tests and the tarball is packed from the tree.
// Without one, the tree's files are copied aside and the prebuild is made there, so the working
// tree (and the binary other test files load) is never touched.
function packageSource(work: string): string {
  if (fs.existsSync(prebuilt)) return root;
  const copy = path.join(work, 'src');
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && fs.existsSync(path.join(root, f)));
  for (const f of [...files, ...walkFiles(path.join(root, 'dist')).map((p) => path.relative(root, p))]) {
    fs.mkdirSync(path.dirname(path.join(copy, f)), { recursive: true });
    fs.copyFileSync(path.join(root, f), path.join(copy, f));
  }
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(copy, 'node_modules'));
  sh('npm', ['run', 'prebuilds'], { cwd: copy });
  return copy;
}

function walkFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walkFiles(path.join(dir, e.name)) : [path.join(dir, e.name)],
  );
}

describe('npm pack + offline install', () => {
  let work: string;
  let source: string;
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'toma-pack-'));
    source = packageSource(work);
  }, 600000);
  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('the prebuilt binary has no CUDA shared-library dependency', () => {
    const needed = execFileSync('readelf', ['-d', path.join(source, path.relative(root, prebuilt))], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('NEEDED'));
    expect(needed.length).toBeGreaterThan(0);
    for (const l of needed) expect(l).not.toMatch(/libcuda|libcudart|libcublas|libnvrtc/);
  });

  test('installs from the tarball without compiling and answers backend()', () => {
    const out = sh('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: source });
    const tgz = fs.readdirSync(work).find((f) => f.endsWith('.tgz'));
    expect(fs.existsSync(path.join(source, 'prebuilds'))).toBe(true);
    expect(tgz).toBeDefined();
    expect(out).toMatch(/prebuilds\/linux-x64\/toma\.node/);

    const stubs = path.join(work, 'stubs');
    fs.mkdirSync(stubs);
    for (const tool of ['cmake', 'nvcc', 'make', 'gcc', 'g++', 'cc', 'c++', 'clang', 'clang++']) {
      fs.writeFileSync(path.join(stubs, tool), `#!/bin/sh\necho "stub ${tool}: compiling is not allowed here" >&2\nexit 97\n`);
      fs.chmodSync(path.join(stubs, tool), 0o755);
    }
    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${stubs}:${process.env.PATH}`, CC: 'false', CXX: 'false' };
    delete env.TOMA_ADDON;
    const log = sh('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', path.join(work, tgz!)], {
      cwd: app,
      env,
    });
    expect(log).toMatch(/toma: using prebuilds\/linux-x64\/toma\.node/);
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
