#!/usr/bin/env bash
# Runs a Windows program under Wine with a private prefix (the first argument),
# creating the prefix on first use. CMake's CROSSCOMPILING_EMULATOR.
#   wine-run.sh PREFIX program.exe [args...]
# PREFIX "native" runs the program itself, without Wine: how the example
# drivers (tests/drivers/) run a Linux build of the examples.
set -euo pipefail
if [[ $1 == native ]]; then
  shift
  exec "$@"
fi
# Wine wants an absolute prefix; accept a relative one from the command line.
prefix=$(realpath -m "$1")
shift
export WINEPREFIX=$prefix
export WINEDEBUG=${WINEDEBUG:--all}
# No Mono or Gecko installer dialogs: nothing here needs them.
export WINEDLLOVERRIDES="mscoree,mshtml=;${WINEDLLOVERRIDES:-}"
wine=/usr/lib/wine/wine64
[[ -x $wine ]] || wine=$(command -v wine64 || command -v wine)

ready=$prefix/.portico-prefix-v2
if [[ ! -f $ready ]]; then
  mkdir -p "$prefix"
  # Two tests may start at once: one initialises, the other waits.
  (
    flock 9
    if [[ ! -f $ready ]]; then
      # Detached from our output: wineboot leaves services running that would
      # otherwise hold the caller's pipes open.
      "$wine" wineboot --init </dev/null >/dev/null 2>&1 || true
      # No crash debugger: by default winedbg catches an unhandled exception
      # and the process then exits with status 0, so a crashing test would
      # pass. Without it the process ends with a non-zero status.
      aedebug='HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug'
      "$wine" reg delete "$aedebug" /v Debugger /f </dev/null >/dev/null 2>&1 || true
      "$wine" reg add "$aedebug" /v Auto /t REG_SZ /d 0 /f </dev/null >/dev/null 2>&1 || true
      touch "$ready"
    fi
  ) 9>"$prefix.lock"
fi
exec "$wine" "$@"
