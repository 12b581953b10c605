#!/usr/bin/env bash
# Starts or stops the wineserver of a test prefix, so a test run shares one
# server and leaves none behind.   wine-server.sh start|stop PREFIX
set -euo pipefail
action=${1:-}
# An empty prefix would mean Wine's default (~/.wine), shared with everything
# else on the machine: refuse it (a build that lost its prefix shows here).
[[ -n ${2:-} ]] || { echo "usage: $0 start|stop PREFIX (no Wine prefix given)" >&2; exit 2; }
export WINEPREFIX=$2
server=/usr/lib/wine/wineserver
[[ -x $server ]] || server=$(command -v wineserver)
case $action in
  start)
    mkdir -p "$WINEPREFIX"
    # A persistent server (it daemonizes), so tests do not each pay for a
    # server start; `stop` ends it.
    # Its output goes nowhere: a daemon holding ctest's pipe open would make
    # ctest wait for it forever.
    "$server" -p </dev/null >/dev/null 2>&1 || true # already running is fine
    "$(dirname "$0")/../../scripts/wine-run.sh" "$WINEPREFIX" cmd /c exit 0 </dev/null >/dev/null 2>&1 || true ;;
  stop)
    "$server" -k 2>/dev/null || true
    "$server" -w 2>/dev/null || true ;;
  *) echo "usage: $0 start|stop PREFIX" >&2; exit 2 ;;
esac
