#!/usr/bin/env bash
# Builds the standalone C++ tests with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option TOMA_SANITIZE=ON) in build-asan/ and runs the whole native suite under ctest.
# Any ASan report (including leaks) or UBSan diagnostic fails the run.
#   JOBS=n   parallel compile jobs (default: number of CPUs)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOMA_SANITIZE=ON -DTOMA_CUDA=OFF >/dev/null
cmake --build build-asan -j "$JOBS"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
ctest --test-dir build-asan --output-on-failure
