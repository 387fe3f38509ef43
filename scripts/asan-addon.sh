#!/usr/bin/env bash
# The Node addon under AddressSanitizer + UBSan: builds it into build-asan-addon/ (cmake-js,
# TOMA_SANITIZE=ON, CPU only), then runs a fuzz batch, the concurrency test and a short leak loop
# with libasan preloaded into node (ASan must be the first DSO; node's own allocations at exit
# are not ours, so detect_leaks=0), and the pinning check (inputs dropped mid-call).
#   CASES=n  fuzz cases (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js build -O build-asan-addon --CDTOMA_SANITIZE=ON --CDTOMA_CUDA=OFF >/dev/null
export TOMA_ADDON="$PWD/build-asan-addon/Release/toma.node"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$PWD/scripts/ubsan.supp"
node --import tsx test/fuzz/cli.ts --cases "${CASES:-2000}" --seed 50001
npx jest test/hardening/concurrency.test.ts
TOMA_LEAK_ADDON="$TOMA_ADDON" TOMA_LEAK_CYCLES=2000 TOMA_LEAK_WARMUP=50 node --expose-gc test/hardening/leak-child.js
TOMA_PIN_ADDON="$TOMA_ADDON" node --expose-gc test/hardening/pin-child.js
