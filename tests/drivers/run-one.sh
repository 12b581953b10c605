#!/usr/bin/env bash
# Runs one Windows program under Wine and says how it ended:
#   run-one.sh PREFIX PROGRAM.exe [ARGS...]
# Prints the program's output, then "exit status N", and exits with N. A
# non-zero N also prints "run-one: FAILED (exit status N)": ctest ignores the
# exit code of a test that matches its output (PASS_REGULAR_EXPRESSION), and
# examples/CMakeLists.txt fails every example test on that line instead.
# Under Wine a crash or a C runtime abort shows as a non-zero N: 0xC0000417
# (STATUS_INVALID_CRUNTIME_PARAMETER) arrives as 23, its low byte.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1
shift
status=0
bash "$here/../../scripts/wine-run.sh" "$prefix" "$@" </dev/null || status=$?
echo "exit status $status"
if ((status != 0)); then echo "run-one: FAILED (exit status $status)"; fi
exit "$status"
