#!/usr/bin/env bash
# Checks that an example server exits cleanly on Ctrl+C with a client still
# connected, as a user stopping it in a terminal would:
#   interrupt-test.sh PREFIX SERVER.exe [SERVER ARGS...]
# Starts the server, reads its port from "listening on HOST:PORT", holds an
# idle connection open, sends SIGINT (Wine turns it into CTRL_C_EVENT), and
# prints the server's output and exit status. Fails if it is still running
# 30 s later. Nothing is left running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1 server=$2
shift 2

out=$(mktemp)
server_pid=
cleanup() {
  local status=$?
  exec 3>&- 2>/dev/null || true
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -f "$out"
  # ctest reads this line: a test that matches output ignores exit codes.
  if ((status != 0)); then echo "interrupt-test: FAILED (exit status $status)"; fi
}
trap cleanup EXIT

# wine-run.sh execs Wine: the PID is the Windows process, so the signal reaches it.
bash "$here/../../scripts/wine-run.sh" "$prefix" "$server" "$@" >"$out" 2>&1 </dev/null &
server_pid=$!

port=
for _ in $(seq 300); do
  first=$(head -n 1 "$out" | tr -d '\r')
  if [[ $first == "listening on "* ]]; then
    port=${first##*:}
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1 # polling a file another process writes
done
[[ -n $port ]] || { echo "interrupt-test: no 'listening on' line:" >&2; cat "$out" >&2; exit 1; }

# An idle client: the server has a session waiting in a receive.
exec 3<>"/dev/tcp/127.0.0.1/$port"
for _ in $(seq 300); do
  grep -q "connected" "$out" && break
  sleep 0.1
done

kill -INT "$server_pid"
status=0
for _ in $(seq 300); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
  echo "interrupt-test: still running 30 s after Ctrl+C" >&2
  status=1
else
  wait "$server_pid" || status=$?
  server_pid=
fi
cat "$out"
echo "exit status $status"
[[ $status -eq 0 ]]
