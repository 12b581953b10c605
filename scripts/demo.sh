#!/usr/bin/env bash
# Sets up everything, builds the Windows demo with mingw-w64 GCC and runs it
# under Wine: a tiny server and client talking over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/setup.sh >/dev/null

build=$root/build/mingw-gcc
prefix=$build/wineprefix
trap 'bash "$root/scripts/wine-server.sh" stop "$prefix"' EXIT

cmake --preset mingw-gcc >/dev/null
cmake --build --preset mingw-gcc --target loopback_demo >/dev/null
bash scripts/wine-server.sh start "$prefix"
bash scripts/wine-run.sh "$prefix" "$build/examples/loopback_demo.exe" "$@"
