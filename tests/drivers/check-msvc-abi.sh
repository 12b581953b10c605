#!/usr/bin/env bash
# The MSVC-ABI check: portico's library, examples and tests built the way a
# Visual Studio user's program is (clang-cl 19 in MSVC mode, the Microsoft STL
# headers, the UCRT, /W4 /WX /permissive-) and run under Wine: the msvc-abi
# preset, on a sysroot made by the workplace's make-sysroot.sh.
#   tests/drivers/check-msvc-abi.sh [STL_GIT_DIR]
#
# Where things are found (the first that exists wins):
#   Microsoft STL source, a git directory (clone or bare mirror) of the public
#   github.com/microsoft/STL: the argument; $PORTICO_MSVC_STL; ../STL beside
#   this checkout; /work/.mirror/microsoft+STL/repo (where this project's
#   machines keep a mirror).
#   make-sysroot.sh: $PORTICO_MSVC_SYSROOT_TOOL; ../shared/msvc-abi/make-sysroot.sh
#   beside this checkout.
#   The sysroot (outside the repository: it holds the STL headers):
#   $PORTICO_MSVC_SYSROOT, default ${XDG_CACHE_HOME:-~/.cache}/portico/msvc-sysroot.
#   It is made, or brought up to date (about 10 s, only changed files are
#   rewritten), on every run. With no STL source but a ready sysroot in
#   $PORTICO_MSVC_SYSROOT, that sysroot is used as it is.
# Without an STL source or without make-sysroot.sh it says so and exits 0 (or
# $PORTICO_MSVC_ABI_SKIP_STATUS: scripts/test.sh counts the check as skipped).
# Installs the Debian packages it needs when missing. No Wine process of its
# own outlives it.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
say() { printf 'msvc-abi: %s\n' "$*"; }
skip() {
  say "SKIPPED: $*"
  exit "${PORTICO_MSVC_ABI_SKIP_STATUS:-0}"
}

stl=
for candidate in "${1:-}" "${PORTICO_MSVC_STL:-}" "$root/../STL" /work/.mirror/microsoft+STL/repo; do
  [[ -n $candidate ]] || continue
  if git --git-dir="$candidate" rev-parse --git-dir >/dev/null 2>&1 ||
     git --git-dir="$candidate/.git" rev-parse --git-dir >/dev/null 2>&1; then
    stl=$(realpath "$candidate")
    [[ -d $stl/.git ]] && stl=$stl/.git
    break
  fi
  [[ $candidate == "${1:-}" || $candidate == "${PORTICO_MSVC_STL:-}" ]] &&
    { echo "msvc-abi: $candidate is not a git directory of the Microsoft STL" >&2; exit 2; }
done
tool=${PORTICO_MSVC_SYSROOT_TOOL:-$root/../shared/msvc-abi/make-sysroot.sh}
sysroot=${PORTICO_MSVC_SYSROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/portico/msvc-sysroot}
sysroot=$(realpath -m "$sysroot")
case $sysroot/ in
  "$root"/*) echo "msvc-abi: the sysroot ($sysroot) must be outside the repository: it holds the STL headers" >&2
             exit 2 ;;
esac

reuse=false
if [[ -z $stl ]]; then
  if [[ -n ${PORTICO_MSVC_SYSROOT:-} && -f $sysroot/toolchain.cmake ]]; then
    reuse=true
  else
    skip "no git directory of the Microsoft STL source (github.com/microsoft/STL) was found.
  Give one as the argument or in PORTICO_MSVC_STL (or a ready sysroot in PORTICO_MSVC_SYSROOT);
  looked in: ../STL, /work/.mirror/microsoft+STL/repo"
  fi
elif [[ ! -f $tool ]]; then
  skip "make-sysroot.sh not found at $tool (set PORTICO_MSVC_SYSROOT_TOOL)"
fi

# What the build needs beyond scripts/setup.sh: Wine's UCRT and Win32 headers
# and its DLLs' import tools (make-sysroot.sh reads both).
bash scripts/setup.sh
missing=()
for p in libwine-dev wine64-tools; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build=$root/build/msvc-abi
stop_wine() {
  [[ -d $build/wineprefix ]] && bash tests/drivers/wine-server.sh stop "$build/wineprefix"
  return 0
}
trap stop_wine EXIT

seconds() { echo $((SECONDS - $1)); }
start=$SECONDS
if $reuse; then
  say "using the sysroot in $sysroot as it is (no STL source given)"
else
  say "sysroot $sysroot from $stl"
  mkdir -p "$(dirname "$sysroot")"
  # One maker at a time per sysroot; the build trees that use it stay valid
  # (it rewrites only files that changed). No smoke test: the preset is one.
  (
    flock 9
    SKIP_APT=1 SKIP_SMOKE=1 bash "$tool" "$stl" "$sysroot"
  ) 9>"$sysroot.lock"
fi
sysroot_time=$(seconds "$start")
export PORTICO_MSVC_SYSROOT=$sysroot

# A build tree configured against another sysroot cannot switch toolchains.
if [[ -f $build/CMakeCache.txt ]] &&
   ! grep -qxF "CMAKE_TOOLCHAIN_FILE:FILEPATH=$sysroot/toolchain.cmake" "$build/CMakeCache.txt"; then
  say "$build was configured with another toolchain: starting it afresh"
  rm -rf "$build"
fi

start=$SECONDS
cmake --preset msvc-abi >/dev/null
cmake --build --preset msvc-abi
build_time=$(seconds "$start")
start=$SECONDS
status=0
ctest --preset msvc-abi -j2 || status=$?
test_time=$(seconds "$start")
say "sysroot ${sysroot_time} s, configure + build ${build_time} s, tests ${test_time} s"
exit "$status"
