#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, a CUDA 13 driver, cmake, nvcc and PyTorch, but
# no Node and no network (the project's lent H100/H200). In under 8 minutes it:
#   1. records the card, driver and toolkit;
#   2. builds the C++ test executable with the CUDA kernels for this card (no Node needed);
#   3. runs every C++ test: each CUDA op against the CPU path on fresh random data, small and
#      SDXL/Flux shapes (ctest; the `cuda` suite is the GPU one);
#   4. times the CUDA ops with CUDA events (median after warm-up) and PyTorch SDPA as the peer,
#      with every attention kernel variant (the sm_90a ones first: TOMA_FLASH=sm90, sm90-pingpong)
#      checked against the CPU path and timed;
#   5. runs compute-sanitizer memcheck and racecheck on the CUDA suite, within what is left of
#      the time budget (GPU_CHECK_BUDGET seconds, default 420);
#   6. times the authors' PyTorch ToMA plan + merge + unmerge as the peer for ours, when their
#      modules were fetched into bench/.cache/authors-toma (carry that folder; never committed);
#   7. prints a short table last (bench/gpu/summarize.py) and leaves in $OUT (default
#      bench/results/gpu-check/) at most 8 files: summary.txt, the JSON results, logs.tar.gz.
# Without a GPU it still builds and runs the CPU parts, reports "no device" and exits 0.
# Usage (device tool): bash bench/gpu-check.sh, carry ["bench/.cache/authors-toma"].
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-check}
mkdir -p "$OUT"
LOGS="$OUT/logs"  # packed into logs.tar.gz at the end (the device tool returns at most 8 files)
mkdir -p "$LOGS"
log() { printf '\n==== %s ====\n' "$*"; }
status=0
fail() { echo "FAIL: $*"; status=1; }
started=$(date +%s)

log "machine"
date -u +%Y-%m-%dT%H:%M:%SZ | tee "$LOGS/date.txt"
nproc
have_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  have_gpu=1
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv | tee "$LOGS/gpu.csv"
else
  echo "no device: nvidia-smi finds no GPU; the GPU steps are skipped" | tee "$LOGS/gpu.csv"
fi
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$NVCC" ] && "$NVCC" --version | tail -2

log "build (C++ tests, CUDA when nvcc is present)"
arch=""
if [ "$have_gpu" = 1 ]; then
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
fi
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
cmake_args=(-S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release)
[ -n "$arch" ] && cmake_args+=(-DTOMA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_CUDA_COMPILER="$NVCC" -DTOMA_PTXAS_VERBOSE=ON)
build_t0=$(date +%s)
if cmake "${cmake_args[@]}" >"$LOGS/cmake.log" 2>&1 && cmake --build build-gpu -j "$(nproc)" >>"$LOGS/cmake.log" 2>&1; then
  echo "built build-gpu/toma_tests in $(( $(date +%s) - build_t0 )) s"
else
  tail -40 "$LOGS/cmake.log"
  fail "build"
fi
# The sm_90a object: wgmma (HGMMA), bulk tensor copies (UTMALDG), setmaxnreg (USETMAXREG) and
# mbarrier waits (SYNCS) should all be in its SASS; registers and spills from ptxas (the build log).
SM90_OBJ=$(find build-gpu -name 'attention_sm90.cu.o' 2>/dev/null | head -1)
CUOBJDUMP=$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump 2>/dev/null || true)
if [ -n "$SM90_OBJ" ] && [ -n "$CUOBJDUMP" ]; then
  "$CUOBJDUMP" --dump-sass "$SM90_OBJ" >"$LOGS/sm90-sass.txt" 2>&1
  echo "sm90 SASS: $(grep -c HGMMA "$LOGS/sm90-sass.txt") HGMMA, $(grep -c UTMALDG "$LOGS/sm90-sass.txt") UTMALDG," \
    "$(grep -c USETMAXREG "$LOGS/sm90-sass.txt") USETMAXREG, $(grep -c 'SYNCS' "$LOGS/sm90-sass.txt") SYNCS, $(grep -cE 'LDL|STL' "$LOGS/sm90-sass.txt") LDL/STL"
fi
grep -E "ptxas info +: Used|spill" "$LOGS/cmake.log" | sed 's/^ *//' | sort | uniq -c | head -4

# Seconds left of the budget (the device tool's lease is short: leave room for one rerun).
BUDGET=${GPU_CHECK_BUDGET:-420}
left() { echo $(( BUDGET - ($(date +%s) - started) )); }
cases_of() { build-gpu/toma_tests --list | grep "^$1 " | cut -d: -f2; }

CASE_TIMEOUT=${GPU_CHECK_CASE_TIMEOUT:-60}  # a hung kernel costs this much, not the whole lease
# Attention kernel variants, each checked against the CPU path and timed: the sm_90a kernel (plain
# and with pingpong turns), then the sm_80 ones. GPU_CHECK_VARIANTS_LIST overrides the list.
VARIANTS=${GPU_CHECK_VARIANTS_LIST:-"sm90 sm90-pingpong 1,64,3 wmma 1,64 2,32"}
variant_env() {  # sets envv for a variant name
  case "$1" in
    sm90*|wmma) envv=(TOMA_FLASH="$1") ;;
    *) envv=(TOMA_FLASH_CFG="$1") ;;
  esac
}
if [ -x build-gpu/toma_tests ]; then
  if [ "${GPU_CHECK_CPU_TESTS:-1}" = 1 ]; then
    log "C++ tests of the CPU path (ctest, every suite but cuda)"
    ctest --test-dir build-gpu --output-on-failure -E '^(cuda|bench.*)$' 2>&1 | tee "$LOGS/ctest.log" | tail -15
    grep -q "100% tests passed" "$LOGS/ctest.log" || fail "ctest"
  else
    echo "GPU_CHECK_CPU_TESTS=0: the CPU suites are left to CI"
  fi

  log "CUDA ops against the CPU path (suite cuda, one process per case)"
  if [ "$have_gpu" = 1 ]; then
    # One process per case: a kernel fault poisons its CUDA context, not the other cases' results.
    : >"$LOGS/cuda-cases.txt"
    for c in $(cases_of cuda); do
      t0=$(date +%s)
      timeout "$CASE_TIMEOUT" build-gpu/toma_tests cuda "$c" >"$LOGS/cuda-$c.log" 2>&1
      rc=$?
      verdict=pass
      [ $rc -eq 124 ] && verdict=TIMEOUT
      [ $rc -ne 0 ] && [ $rc -ne 124 ] && verdict=FAIL
      printf '%-58s %-7s %3ss\n' "$c" "$verdict" "$(( $(date +%s) - t0 ))" | tee -a "$LOGS/cuda-cases.txt"
      if [ "$verdict" != pass ]; then
        grep -E "FAIL|error|CHECK|REQUIRE" "$LOGS/cuda-$c.log" | head -8
        fail "cuda.$c"
      fi
    done
    # The same merge-attention-unmerge cases forced through the unfused path (merge, attention,
    # unmerge as separate launches): if only the fused kernel fails, this says so.
    if timeout "$CASE_TIMEOUT" env TOMA_MAU_FUSED=0 build-gpu/toma_tests cuda merge_attention_unmerge >"$LOGS/cuda-unfused.log" 2>&1; then
      printf '%-58s %-7s\n' "merge_attention_unmerge* (TOMA_MAU_FUSED=0)" pass | tee -a "$LOGS/cuda-cases.txt"
    else
      printf '%-58s %-7s\n' "merge_attention_unmerge* (TOMA_MAU_FUSED=0)" FAIL | tee -a "$LOGS/cuda-cases.txt"
      fail "cuda.merge_attention_unmerge* unfused"
    fi
    # The attention cases on every compiled kernel variant (the default one ran above), the sm_90a
    # kernels first (never run on a card before this script: opt-in, TOMA_FLASH=sm90).
    for v in $VARIANTS; do
      variant_env "$v"
      if timeout "$CASE_TIMEOUT" env "${envv[@]}" build-gpu/toma_tests cuda attention >"$LOGS/cuda-variant-${v//,/x}.log" 2>&1; then
        if grep -q "TOMA_FLASH=sm90 ignored" "$LOGS/cuda-variant-${v//,/x}.log"; then
          printf '%-58s %-7s %s\n' "attention* merge_attention_unmerge* (variant $v)" SKIPPED \
            "$(grep -m1 -o 'ignored: .*' "$LOGS/cuda-variant-${v//,/x}.log")" | tee -a "$LOGS/cuda-cases.txt"
          continue
        fi
        printf '%-58s %-7s\n' "attention* merge_attention_unmerge* (variant $v)" pass | tee -a "$LOGS/cuda-cases.txt"
      else
        printf '%-58s %-7s\n' "attention* merge_attention_unmerge* (variant $v)" FAIL | tee -a "$LOGS/cuda-cases.txt"
        grep -E "FAIL|error" "$LOGS/cuda-variant-${v//,/x}.log" | head -5
        fail "cuda attention variant $v"
      fi
    done
  else
    build-gpu/toma_tests cuda 2>&1 | tee "$LOGS/cuda-cases.txt" | tail -3
  fi

  if [ "$have_gpu" = 1 ] && [ "${GPU_CHECK_VARIANTS:-1}" = 1 ]; then
    # The attention kernels compiled side by side (flash.cuh): WMMA and the mma kernel's row-block
    # and key-tile variants, so one run on a card says which to ship as the default.
    log "timings: attention kernel variants (TOMA_FLASH / TOMA_FLASH_CFG)"
    for v in $VARIANTS; do
      if [ "$(left)" -lt 150 ]; then echo "budget: variant $v skipped"; continue; fi
      variant_env "$v"
      echo "-- variant $v"
      env "${envv[@]}" TOMA_BENCH_JSON="$LOGS/variant-${v//,/x}.json" timeout 120 build-gpu/toma_tests bench_cuda attention 2>&1 \
        | tee -a "$LOGS/variants.txt" | grep -E "^(attention_cuda|mergeAttentionUnmerge)" | grep -v "+plan" | cut -c1-110
    done
  fi

  if [ "$have_gpu" = 1 ]; then
    log "timings: toma CUDA ops (CUDA events, median after warm-up)"
    for c in $(cases_of bench_cuda); do
      if [ "$(left)" -lt 120 ]; then echo "budget: bench_cuda.$c skipped"; continue; fi
      TOMA_BENCH_JSON="$OUT/toma-cuda.json" timeout 150 build-gpu/toma_tests bench_cuda "$c" 2>&1 | tee -a "$LOGS/toma-cuda.txt" \
        | grep -vE '^\[ +(RUN|OK) +\]' | tail -40
    done
  fi
fi

if [ "$have_gpu" = 1 ]; then
  if [ -n "${GPU_CHECK_PEERS_FROM:-}" ]; then
    # A rerun on the same card: the peers measured earlier (same card, same day) stand.
    log "peers: reused from $GPU_CHECK_PEERS_FROM"
    cp "$GPU_CHECK_PEERS_FROM"/torch-peers.json "$GPU_CHECK_PEERS_FROM"/authors-peer.json "$OUT"/ || fail "peers copy"
  else
    log "timings: PyTorch peers (SDPA, matmul peak, copy bandwidth)"
    PYTHONUNBUFFERED=1 timeout 150 python3 bench/gpu/torch_peers.py --json "$OUT/torch-peers.json" 2>&1 | tee "$LOGS/torch-peers.txt" \
      || fail "torch peers"
    log "timings: the authors' PyTorch ToMA (plan, merge, unmerge)"
    PYTHONUNBUFFERED=1 timeout 90 python3 bench/gpu/authors_peer.py --json "$OUT/authors-peer.json" 2>&1 | tee "$LOGS/authors-peer.txt" \
      || fail "authors peer"
  fi
fi

if [ "$have_gpu" = 1 ] && [ -x build-gpu/toma_tests ]; then
  log "compute-sanitizer (the cuda suite at small shapes)"
  CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [ -z "$CS" ]; then
    echo "compute-sanitizer not found: skipped"
  else
    # memcheck over every case; racecheck (slower) over the kernels with shared-memory handoffs.
    for tool in memcheck racecheck; do
      cases=""
      # sm90:<case> runs the case on the sm_90a kernel (TOMA_FLASH=sm90), first: it is the new code.
      [ "$tool" = racecheck ] && cases="sm90:attention_tensor_cores_f16_bf16 sm90:merge_attention_unmerge_fused attention_tensor_cores_f16_bf16 merge_attention_unmerge_fused plans_match_the_cpu_on_small_regions attention_float32 plans_match_the_cpu_on_large_regions"
      [ -z "$cases" ] && cases="sm90:attention ALL"
      for c in $cases; do
        budget=$(left)
        if [ "$budget" -lt 30 ]; then echo "budget: $tool $c skipped"; continue; fi
        [ "$budget" -gt 150 ] && budget=150
        filter=()
        cenv=()
        if [ "${c#sm90:}" != "$c" ]; then cenv=(TOMA_FLASH=sm90); filter=("${c#sm90:}");
        elif [ "$c" != ALL ]; then filter=("$c"); fi
        # API errors are not reported: the out-of-memory case provokes one on purpose, and every
        # API call is checked by the code itself.
        timeout "$budget" env TOMA_TEST_SMALL=1 "${cenv[@]}" "$CS" --tool "$tool" --report-api-errors no --error-exitcode 9 \
          build-gpu/toma_tests cuda "${filter[@]}" >>"$LOGS/sanitizer-$tool.log" 2>&1
        rc=$?
        if [ $rc -eq 0 ]; then
          echo "$tool ${c}: clean"
        elif [ $rc -eq 124 ]; then
          echo "$tool ${c}: TIMEOUT after ${budget} s (budget), not a finding"
        elif grep -q "Device not supported" "$LOGS/sanitizer-$tool.log"; then
          # Seen on the gVisor runtime: the sanitizer cannot attach there at all (not our error).
          echo "compute-sanitizer: 'Device not supported' on this machine's runtime: sanitizers skipped"
          break 2
        else
          tail -20 "$LOGS/sanitizer-$tool.log"
          fail "compute-sanitizer $tool $c"
        fi
      done
    done
  fi
fi

if [ "$have_gpu" = 1 ] && [ -x build-gpu/toma_tests ] && [ "${GPU_CHECK_NCU:-1}" = 1 ]; then
  # One launch of each attention kernel under Nsight Compute (where the runtime lets it read the
  # counters): throughput, occupancy and warp stall reasons, for the next round of tuning.
  log "ncu: one dense and one fused attention launch"
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
  if [ -n "$NCU" ] && [ "$(left)" -gt 30 ]; then
    for k in sm90_attention mma_attention mma_mau_attention; do
      case_=attention_dense
      kenv=()
      [ "$k" = mma_mau_attention ] && case_=merge_attention_unmerge
      [ "$k" = sm90_attention ] && kenv=(TOMA_FLASH=sm90)
      t=$(left)
      [ "$t" -gt 60 ] && t=60
      if [ "$t" -lt 20 ]; then echo "budget: ncu $k skipped"; continue; fi
      timeout "$t" env "${kenv[@]}" "$NCU" --clock-control none --kernel-name "regex:^${k}|${k}<" --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
        --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
        build-gpu/toma_tests bench_cuda "$case_" >"$LOGS/ncu-$k.txt" 2>&1
      echo "ncu $k: exit $? ($(grep -c . "$LOGS/ncu-$k.txt") lines in logs/ncu-$k.txt)"
      grep -E "Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Duration" "$LOGS/ncu-$k.txt" | head -6
    done
  else
    echo "ncu: not found or no budget left: skipped"
  fi
fi

log "summary ($(( $(date +%s) - started )) s)"
[ -f "$LOGS/gpu.csv" ] && cat "$LOGS/gpu.csv"
[ -f "$LOGS/ctest.log" ] && grep -E "tests passed|tests failed" "$LOGS/ctest.log"
[ -f "$LOGS/cuda-cases.txt" ] && cat "$LOGS/cuda-cases.txt"
python3 bench/gpu/summarize.py "$OUT" 2>&1 | tee "$OUT/summary.txt"
tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs && rm -rf "$LOGS"
if [ "$have_gpu" = 0 ]; then
  echo "no device: CPU parts ran; GPU steps skipped"
fi
exit $status
