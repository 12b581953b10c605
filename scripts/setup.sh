#!/usr/bin/env bash
# Installs, from Debian's packages and only when missing, everything portico's
# build, tests, examples and benchmarks need. Safe to run any number of times.
set -euo pipefail

packages=(
  cmake ninja-build make git ca-certificates openssl python3 doxygen clang-format-19
  g++ clang-19 lld-19 libclang-rt-19-dev llvm-19
  g++-mingw-w64-x86-64-posix gcc-mingw-w64-x86-64-posix mingw-w64-x86-64-dev
  wine wine64
  catch2 libasio-dev liburing-dev
)

missing=()
for p in "${packages[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
