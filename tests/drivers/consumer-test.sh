#!/usr/bin/env bash
# Builds tests/consumer, a project of its own that uses portico, the way a
# user would, then runs it under Wine:
#   consumer-test.sh find_package|add_subdirectory|fetchcontent TOOLCHAIN PREFIX
# TOOLCHAIN is the toolchain file of the build under test; PREFIX is the Wine
# prefix to run the consumer in. The consumer project is copied out of the
# checkout first. Prints what it did; its last line is
# "consumer (portico X.Y.Z): ok" on success. Everything is built in a
# temporary directory, removed afterwards.
#
# find_package uses the installed tree only, as a user without a checkout
# would: portico is installed (cmake --install, configured natively: the
# package is headers only, so the same install serves the cross build), and
# the consumer is configured with the install prefix and, when TOOLCHAIN is
# one of portico's cmake/toolchains/ files, with the copy of it installed
# under share/portico/toolchains/. Afterwards the consumer's build tree must
# not name the checkout anywhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd -P)
mode=${1:-} toolchain=${2:-} prefix=${3:-}
if [[ -z $toolchain || -z $prefix ]]; then
  echo "usage: $0 find_package|add_subdirectory|fetchcontent TOOLCHAIN PREFIX" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $work/ == "$root"/* ]]; then
  echo "consumer-test: the temporary directory $work is inside the checkout; set TMPDIR elsewhere" >&2
  exit 1
fi
cp -R "$root/tests/consumer" "$work/consumer-src"

consumer_args=(-DPORTICO_CONSUME="$mode")
case $mode in
  find_package)
    installed=$work/installed
    cmake -S "$root" -B "$work/portico-build" -G Ninja -DPORTICO_BUILD_TESTS=OFF -DPORTICO_BUILD_EXAMPLES=OFF \
      >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
    cmake --install "$work/portico-build" --prefix "$installed" >>"$work/install.log" 2>&1 ||
      { cat "$work/install.log"; exit 1; }
    echo "installed: $(cd "$installed" && find . -name '*.cmake' | sort | tr '\n' ' ')"
    # portico's own toolchain files are taken from the install, as
    # getting-started tells a find_package user; any other (the MSVC-ABI
    # sysroot's) is the build's own and is used as it is.
    if [[ $(dirname "$(realpath "$toolchain")") == "$root/cmake/toolchains" ]]; then
      toolchain=$installed/share/portico/toolchains/$(basename "$toolchain")
      [[ -f $toolchain ]] || { echo "not installed: ${toolchain#"$installed"/}" >&2; exit 1; }
      echo "toolchain: <install>/${toolchain#"$installed"/}"
    elif [[ $(realpath "$toolchain") == "$root"/* ]]; then
      echo "consumer-test: $toolchain is in the checkout but is not one portico installs" >&2
      exit 1
    else
      echo "toolchain: $toolchain (the build's own, not portico's)"
    fi
    # Only the install prefix: no package registry that might point elsewhere.
    consumer_args+=(-DCMAKE_PREFIX_PATH="$installed" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
      -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
    ;;
  add_subdirectory | fetchcontent)
    consumer_args+=(-DPORTICO_SOURCE_DIR="$root")
    ;;
  *)
    echo "usage: $0 find_package|add_subdirectory|fetchcontent TOOLCHAIN PREFIX" >&2
    exit 2
    ;;
esac

cmake -S "$work/consumer-src" -B "$work/consumer-build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
  -DCMAKE_BUILD_TYPE=Release "${consumer_args[@]}" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
if [[ $mode == find_package ]]; then
  found=$(sed -n 's/^portico_DIR:PATH=//p' "$work/consumer-build/CMakeCache.txt")
  [[ $found == "$installed"/* ]] || { echo "consumer-test: portico found in '$found', not in the install" >&2; exit 1; }
  echo "found: <install>/${found#"$installed"/}"
fi
cmake --build "$work/consumer-build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
# Nothing but the consumer was built: portico's own tests and examples stay
# off when it is not the top-level project.
find "$work/consumer-build" -maxdepth 1 -name '*.exe' -printf 'built: %f\n' | sort
if [[ $mode == find_package ]]; then
  # The proof that the installed tree was enough: no file of the consumer's
  # build (cache, build rules, dependency logs) names the checkout.
  if grep -rl --binary-files=text -F "$root" "$work/consumer-build" >"$work/mentions.txt"; then
    echo "consumer-test: the consumer's build refers to the checkout $root:" >&2
    sed "s|^$work/||" "$work/mentions.txt" >&2
    exit 1
  fi
  echo "checkout: named nowhere in the consumer's build"
fi
bash "$root/scripts/wine-run.sh" "$prefix" "$work/consumer-build/consumer.exe"
