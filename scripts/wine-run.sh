#!/usr/bin/env bash
# Runs a Windows program under Wine with a private prefix (the first argument),
# creating the prefix on first use. CMake's CROSSCOMPILING_EMULATOR.
#   wine-run.sh PREFIX program.exe [args...]
set -euo pipefail
prefix=$1
shift
export WINEPREFIX=$prefix
export WINEDEBUG=${WINEDEBUG:--all}
# No Mono or Gecko installer dialogs: nothing here needs them.
export WINEDLLOVERRIDES="mscoree,mshtml=;${WINEDLLOVERRIDES:-}"
wine=/usr/lib/wine/wine64
[[ -x $wine ]] || wine=$(command -v wine64 || command -v wine)

if [[ ! -f $prefix/.portico-ready ]]; then
  mkdir -p "$prefix"
  # Two tests may start at once: one initialises, the other waits.
  (
    flock 9
    if [[ ! -f $prefix/.portico-ready ]]; then
      # Detached from our output: wineboot leaves services running that would
      # otherwise hold the caller's pipes open.
      "$wine" wineboot --init </dev/null >/dev/null 2>&1 || true
      touch "$prefix/.portico-ready"
    fi
  ) 9>"$prefix.lock"
fi
exec "$wine" "$@"
