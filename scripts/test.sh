#!/usr/bin/env bash
# Sets up everything (Debian packages, only what is missing), checks the
# format, that no co_await sits in a condition (GCC 12.2 miscompiles it:
# tests/drivers/check-await-conditions.py) and the API reference (Doxygen, no
# warnings), and runs every
# test in every preset: native ASan+UBSan and TSan for the platform-neutral
# layers, then the Windows builds (mingw-w64 GCC and Clang) under Wine, then
# the MSVC-ABI build under Wine (tests/drivers/check-msvc-abi.sh: skipped, and
# counted as such, where no Microsoft STL source is found), then the
# benchmark suite in miniature (scripts/bench.sh --smoke). The linux-gcc stage
# builds and runs only the io catalogue on io_uring (portico_tests_uring_context):
# native GCC 12, optimised, where the heap per connection is measured as
# shipped (the rest runs natively in the two Clang stages); then the ring-
# sharing benchmark briefly (bench/uring_rings.cpp), so that it builds and
# runs and its numbers are in the log.
#   scripts/test.sh [PRESET...]     default: linux linux-tsan linux-gcc mingw-gcc mingw-clang msvc-abi bench
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/setup.sh

presets=(linux linux-tsan linux-gcc mingw-gcc mingw-clang msvc-abi bench)
if (($#)); then presets=("$@"); fi

# Whatever happens, leave no wineserver (or Wine program) behind.
stop_wine() {
  for prefix in "$root"/build/*/wineprefix; do
    [[ -d $prefix ]] && bash tests/drivers/wine-server.sh stop "$prefix"
  done
  return 0
}
trap stop_wine EXIT

passed=0
failed=0
skipped=0
echo "=== format"
if bash tests/drivers/check-format.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "=== await-conditions"
if python3 tests/drivers/check-await-conditions.py; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "=== reference"
if bash tests/drivers/check-reference.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
# How long each stage took, printed at the end: what to look at when CI's
# time grows.
took=()
for preset in "${presets[@]}"; do
  echo "=== $preset"
  stage_start=$SECONDS
  if [[ $preset == bench ]]; then
    if bash scripts/bench.sh --smoke; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "=== bench FAILED"; fi
    took+=("$preset $((SECONDS - stage_start)) s")
    continue
  fi
  if [[ $preset == msvc-abi ]]; then
    status=0
    PORTICO_MSVC_ABI_SKIP_STATUS=77 bash tests/drivers/check-msvc-abi.sh || status=$?
    case $status in
      0) passed=$((passed + 1)) ;;
      77) skipped=$((skipped + 1)) ;;
      *) failed=$((failed + 1)); echo "=== msvc-abi FAILED" ;;
    esac
    took+=("$preset $((SECONDS - stage_start)) s")
    continue
  fi
  build=()
  test=()
  after=(true)
  if [[ $preset == linux-gcc ]]; then
    build=(--target portico_tests_uring_context bench_uring_rings)
    test=(-L '^portico_tests_uring_context$')
    after=(build/linux-gcc/bench/bench_uring_rings 0.5)
  fi
  if cmake --preset "$preset" >/dev/null &&
     cmake --build --preset "$preset" "${build[@]}" &&
     ctest --preset "$preset" -j2 "${test[@]}" &&
     "${after[@]}"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "=== $preset FAILED"
  fi
  took+=("$preset $((SECONDS - stage_start)) s")
done

if ((${#took[@]})); then
  (IFS=,; echo "stages:${took[*]/#/ }")
fi
echo "checks: $passed passed, $failed failed$( ((skipped)) && echo ", $skipped skipped")"
((failed == 0))
