#!/usr/bin/env bash
# Runs a few C++ suites of the native tests under valgrind memcheck (no sanitizer build: valgrind
# and ASan do not mix). Uses build-tests/ (npm run test:native) and builds it if missing.
#   SUITES="dtype regions ..."   suites to run (default: a quick subset)
set -euo pipefail
cd "$(dirname "$0")/.."
SUITES="${SUITES:-dtype thread_pool regions plan merge unmerge}"
if [ ! -x build-tests/toma_tests ]; then
  cmake -S . -B build-tests -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-tests -j "$(nproc)"
fi
status=0
for s in $SUITES; do
  echo "== valgrind memcheck: $s"
  if ! valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --show-leak-kinds=definite,indirect --track-origins=no -q build-tests/toma_tests "$s"; then
    echo "!! $s: valgrind reported errors (or the suite failed)"; status=1
  fi
done
exit $status
