#!/usr/bin/env bash
# Builds tests/consumer, a project of its own that uses portico, the way a
# user would, then runs it under Wine:
#   consumer-test.sh find_package|add_subdirectory|fetchcontent TOOLCHAIN PREFIX
# find_package first installs portico (cmake --install, configured natively:
# the package is headers only, so the same install serves the cross build).
# TOOLCHAIN is the mingw toolchain file to build the consumer with; PREFIX is
# the Wine prefix to run it in. Prints the consumer's output; its last line is
# "consumer (portico X.Y.Z): ok" on success. Everything is built in a
# temporary directory, removed afterwards.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mode=$1 toolchain=$2 prefix=$3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

consumer_args=(-DPORTICO_CONSUME="$mode")
case $mode in
  find_package)
    cmake -S "$root" -B "$work/portico-build" -G Ninja -DPORTICO_BUILD_TESTS=OFF -DPORTICO_BUILD_EXAMPLES=OFF \
      >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
    cmake --install "$work/portico-build" --prefix "$work/installed" >>"$work/install.log" 2>&1 ||
      { cat "$work/install.log"; exit 1; }
    echo "installed: $(cd "$work/installed" && find . -name 'portico*.cmake' | sort | tr '\n' ' ')"
    consumer_args+=(-DCMAKE_PREFIX_PATH="$work/installed")
    ;;
  add_subdirectory | fetchcontent)
    consumer_args+=(-DPORTICO_SOURCE_DIR="$root")
    ;;
  *)
    echo "usage: $0 find_package|add_subdirectory|fetchcontent TOOLCHAIN PREFIX" >&2
    exit 2
    ;;
esac

cmake -S "$root/tests/consumer" -B "$work/consumer-build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
  -DCMAKE_BUILD_TYPE=Release "${consumer_args[@]}" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
cmake --build "$work/consumer-build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
# Nothing but the consumer was built: portico's own tests and examples stay
# off when it is not the top-level project.
find "$work/consumer-build" -maxdepth 1 -name '*.exe' -printf 'built: %f\n' | sort
bash "$root/scripts/wine-run.sh" "$prefix" "$work/consumer-build/consumer.exe"
