#!/usr/bin/env bash
# Shows GCC bug 106188 (a co_await in an if/while/for/switch condition, with
# no local variable in any block around it, is miscompiled by GCC before 12.3)
# on every compiler at hand, and that binding the result to a variable first
# is right everywhere. docs/platform-notes.md describes it; this script is how
# that page's claims are checked. Not run by scripts/test.sh: it documents the
# compilers, not portico (tests/drivers/check-await-conditions.py keeps the
# pattern out of portico's code).
#   gcc-pr106188.sh [WINE_PREFIX]     default prefix: build/gcc-pr106188/wineprefix
# Builds tests/drivers/gcc-pr106188.cpp natively (g++-12, clang++-19) and for
# Windows (mingw-w64 GCC and Clang, run under Wine), prints what each got
# right, and exits 1 if a result differs from the notes: a workaround shape
# wrong anywhere, or a condition shape wrong on a compiler the notes call
# fixed (or right on one they call affected).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
prefix=$(realpath -m "${1:-$root/build/gcc-pr106188/wineprefix}")
source=$root/tests/drivers/gcc-pr106188.cpp

work=$(mktemp -d)
wine_used=0
cleanup() {
  ((wine_used)) && bash "$root/tests/drivers/wine-server.sh" stop "$prefix"
  rm -rf "$work"
}
trap cleanup EXIT

mismatches=0
# check NAME IS_GCC VERSION RUNNER COMPILER [FLAGS...]: builds the program with
# COMPILER, runs it (under Wine when RUNNER is "wine") and judges its lines.
check() {
  local name=$1 is_gcc=$2 version=$3 runner=$4
  shift 4
  if ! command -v "$1" >/dev/null; then
    echo "$name: $1 not found, skipped"
    return
  fi
  local out=$work/$name
  [[ -n $runner ]] && out+=.exe
  if ! "$@" -std=c++20 -O2 -I"$root/include" "$source" -o "$out" >"$work/$name.log" 2>&1; then
    echo "$name: build failed"
    cat "$work/$name.log"
    mismatches=$((mismatches + 1))
    return
  fi
  local run=("$out")
  if [[ -n $runner ]]; then
    wine_used=1
    run=(bash "$root/scripts/wine-run.sh" "$prefix" "$out")
  fi
  # One process per case: a wrongly compiled case may crash, and must not
  # take the others with it.
  local results="" index kind shape status
  while read -r index kind shape; do
    status=0
    "${run[@]}" "$index" </dev/null >/dev/null 2>&1 || status=$?
    case $status in
      0) results+=$(printf '%-5s %-10s %s' right "$kind" "$shape")$'\n' ;;
      1) results+=$(printf '%-5s %-10s %s' WRONG "$kind" "$shape")$'\n' ;;
      *) results+=$(printf '%-5s %-10s %s (crashed: status %d)' WRONG "$kind" "$shape" "$status")$'\n' ;;
    esac
  done < <("${run[@]}" | tr -d '\r')
  results=${results%$'\n'}
  # The notes: GCC before 12.3 is affected; Clang is not.
  local affected=0
  if ((is_gcc)) && [[ $version != 12.3.0 ]] && printf '%s\n12.3.0\n' "$version" | sort -V -C; then affected=1; fi
  local conditions wrong_conditions wrong_others verdict
  conditions=$(grep -c ' condition ' <<<"$results" || true)
  wrong_conditions=$(grep -c '^WRONG condition ' <<<"$results" || true)
  wrong_others=$(grep '^WRONG' <<<"$results" | grep -vc ' condition ' || true)
  if ((wrong_others == 0)) && { ((affected && wrong_conditions == conditions)) ||
    ((!affected && wrong_conditions == 0)); }; then
    verdict="as documented"
  else
    verdict="DIFFERS from docs/platform-notes.md"
    mismatches=$((mismatches + 1))
  fi
  echo "$name ($version, -O2): $wrong_conditions of $conditions condition shapes wrong, $wrong_others other" \
    "shapes wrong; $( ((affected)) && echo "affected (GCC < 12.3)" || echo "not affected"): $verdict"
  sed 's/^/    /' <<<"$results"
}

# The compiler's own version macros. Debian's mingw-w64 GCC 12.2 says 12.0.0 there
# (and "12-posix" to -dumpfullversion): only the package version tells 12.2.
version_of() {
  "$@" -x c++ -dM -E - </dev/null 2>/dev/null | awk '
    { macro[$2] = $3 }
    END {
      if ("__clang__" in macro) print macro["__clang_major__"] "." macro["__clang_minor__"] "." macro["__clang_patchlevel__"]
      else if ("__GNUC__" in macro) print macro["__GNUC__"] "." macro["__GNUC_MINOR__"] "." macro["__GNUC_PATCHLEVEL__"]
      else print "unknown"
    }'
}

mingw_clang=(clang++-19 --target=x86_64-w64-mingw32)
check "native g++-12" 1 "$(version_of g++-12)" "" g++-12
check "native clang++-19" 0 "$(version_of clang++-19)" "" clang++-19
check "mingw-w64 g++ (posix)" 1 "$(version_of x86_64-w64-mingw32-g++-posix)" wine x86_64-w64-mingw32-g++-posix -static
check "mingw-w64 clang++-19" 0 "$(version_of "${mingw_clang[@]}")" wine "${mingw_clang[@]}" -fuse-ld=lld -static -pthread

echo "gcc-pr106188: $mismatches result(s) differ from the notes"
((mismatches == 0))
