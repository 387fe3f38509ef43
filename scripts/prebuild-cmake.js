#!/usr/bin/env node
// prebuildify only knows how to run node-gyp. It is pointed here instead (--node-gyp), so the
// prebuilt binary is the cmake-js build with CUDA kernels (AUTO: when nvcc is present). The
// node-gyp arguments it passes (rebuild --target= --devdir= --arch= --release) do not apply:
// the addon uses Node-API 8, so one binary serves every Node version.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
const cuda = process.env.TOMA_CUDA || 'AUTO';
const r = spawnSync(process.execPath, [cmakeJs, 'rebuild', `--CDTOMA_CUDA=${cuda}`], { cwd: root, stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
