#!/usr/bin/env bash
# Runs the CUDA kernels' real source on the CPU (csrc/tests/emu: CUDA threads as fibers or
# threads, barriers, warp shuffles, WMMA, ldmatrix / mma.sync and cp.async stand-ins; Hopper's
# wgmma, mbarriers, bulk tensor copies) against the CPU ops and float64
# references, so every CI run exercises them without a GPU. Fixed seeds, plus one fresh seed that
# is printed: EMU_SEED=<n> reruns a failure with that seed. Needs g++ >= 12, make, python3 and the
# CUDA headers (CUDA_INCLUDE, default /usr/local/cuda/include); without the headers it is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cuda_include=${CUDA_INCLUDE:-/usr/local/cuda/include}
for h in cuda_runtime.h cuda_fp16.h cuda_bf16.h vector_types.h; do
  if [ ! -f "$cuda_include/$h" ]; then
    echo "cuda-emu: $cuda_include/$h not found (set CUDA_INCLUDE to the CUDA headers): skipped"
    exit 0
  fi
done

build=${EMU_BUILD:-$root/build-emu}
jobs=${JOBS:-$(nproc)}
fixed_seed=1
fresh_seed=${EMU_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}

start=$SECONDS
echo "cuda-emu: building in $build ($jobs jobs)"
make -s -f csrc/tests/emu/Makefile -j"$jobs" ROOT="$root" BUILD="$build" CUDA_INCLUDE="$cuda_include"
echo "cuda-emu: built in $((SECONDS - start)) s"
echo "cuda-emu: seeds $fixed_seed (fixed) and $fresh_seed (fresh; rerun with EMU_SEED=$fresh_seed)"

logs=$build/logs
rm -rf "$logs"
mkdir -p "$logs"
runs=()
run() {  # run NAME COMMAND...: in the background, at most $jobs at a time; log and status in $logs
  local name=$1
  shift
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  runs+=("$name")
  (
    t0=$SECONDS
    rc=0
    "$@" >"$logs/$name.log" 2>&1 || rc=$?
    echo "$rc $((SECONDS - t0))" >"$logs/$name.status"
  ) &
}
# Longest first: the plan runs take most of the time.
run "plan-seed-$fixed_seed" "$build/emu_plan" "$fixed_seed" all
run "plan-seed-$fresh_seed" "$build/emu_plan" "$fresh_seed" all
run "flash-seed-$fixed_seed" "$build/emu_flash" "$fixed_seed"
run "flash-seed-$fresh_seed" "$build/emu_flash" "$fresh_seed"
run "hopper-isa-seed-$fresh_seed" "$build/emu_hopper_isa" "$fresh_seed"
run "sm90-seed-$fixed_seed" "$build/emu_sm90" "$fixed_seed"
run "sm90-seed-$fresh_seed" "$build/emu_sm90" "$fresh_seed"
wait

failed=0
for name in "${runs[@]}"; do
  read -r rc secs <"$logs/$name.status"
  if [ "$rc" -eq 0 ]; then
    echo "---- $name: passed in $secs s: $(tail -n 1 "$logs/$name.log")"
  else
    failed=1
    echo "---- $name: FAILED (exit $rc) in $secs s; log:"
    cat "$logs/$name.log"
  fi
done
if [ "${EMU_PLANT:-0}" = 1 ]; then
  # Planted bugs in the sm_90a kernel (plant_sm90.py): each mutant must fail emu_sm90.
  python3 csrc/tests/emu/plant_sm90.py "$root" "$build" 2>&1 | grep -E "^(caught|MISSED)|plant_sm90" || failed=1
fi
echo "cuda-emu: $((SECONDS - start)) s in all"
if [ "$failed" -ne 0 ]; then
  echo "cuda-emu: FAILED (reproduce: EMU_SEED=$fresh_seed bash scripts/cuda-emu.sh; logs in $logs)"
  exit 1
fi
echo "cuda-emu: passed"
