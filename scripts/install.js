// Runs on `npm install`. A binary that already loads (the prebuilt one shipped in the package, or
// a local build) is kept and nothing is compiled. Otherwise the addon is built from source:
// cmake-js (with CUDA when nvcc is found) where cmake-js and cmake are available, else node-gyp
// with binding.gyp (CPU only). Set npm_config_build_from_source=true to force a source build.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const candidates = [
  process.env.TOMA_ADDON,
  path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'toma.node'),
  path.join(root, 'build', 'Release', 'toma.node'),
].filter(Boolean);

// Loads in a child process, so a binary that crashes on load cannot take npm down with it.
function loads(file) {
  if (!fs.existsSync(file)) return false;
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)}).backendInfo()`], { stdio: 'ignore' });
  return r.status === 0;
}

function run(cmd, args) {
  console.log(`toma: ${[path.basename(cmd), ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  return r.status === 0;
}

function hasCmake() {
  return spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0;
}

const fromSource = /^(1|true)$/i.test(process.env.npm_config_build_from_source || '');
if (!fromSource) {
  const ok = candidates.find(loads);
  if (ok) {
    console.log(`toma: using ${path.relative(root, ok) || ok}`);
    process.exit(0);
  }
}

let cmakeJs;
try {
  cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
} catch {
  cmakeJs = undefined;
}
if (cmakeJs && hasCmake() && run(process.execPath, [cmakeJs, 'build'])) process.exit(0);

// npm puts its bundled node-gyp on PATH for install scripts and names it in npm_config_node_gyp.
const gyp = process.env.npm_config_node_gyp;
const ok = gyp ? run(process.execPath, [gyp, 'rebuild']) : run('node-gyp', ['rebuild']);
if (!ok) {
  console.error(
    'toma: no prebuilt binary for this platform and the source build failed.\n' +
      'Possible solutions:\n' +
      '  - install a C++17 compiler, python3 and make (node-gyp), or cmake (cmake-js), then reinstall\n' +
      '  - build it yourself in the package folder: npx cmake-js build, and set TOMA_ADDON to the result',
  );
  process.exit(1);
}
