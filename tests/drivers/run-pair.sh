#!/usr/bin/env bash
# Runs an example server and a client against it under Wine, the way a user
# would in two terminals:
#   run-pair.sh PREFIX SERVER.exe "SERVER ARGS" CLIENT.exe "CLIENT ARGS" [STDIN]
# The server must print "listening on HOST:PORT" as its first line; the client
# gets "--port PORT" added. STDIN (printf %b escapes) is fed to the client.
# Prints the client's output, then the server's; fails if either fails or the
# server does not exit within 60 s of the client. With RUN_PAIR_SERVER_STAYS=1
# (a server that serves until stopped) the server is stopped once the client
# is done, and only the client's status counts. Nothing is left running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1 server=$2 server_args=$3 client=$4 client_args=$5 input=${6:-}

work=$(mktemp -d)
server_pid=
cleanup() {
  local status=$?
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  # ctest reads this line: a test that matches output ignores exit codes.
  if ((status != 0)); then echo "run-pair: FAILED (exit status $status)"; fi
}
trap cleanup EXIT

# Created before the server starts, so the poll below never reads a missing file.
: >"$work/server.out"
# shellcheck disable=SC2086 # the argument strings are word lists on purpose
bash "$here/../../scripts/wine-run.sh" "$prefix" "$server" $server_args >"$work/server.out" 2>&1 </dev/null &
server_pid=$!

port=
for _ in $(seq 300); do
  first=$(head -n 1 "$work/server.out" | tr -d '\r')
  if [[ $first == "listening on "* ]]; then
    port=${first##*:}
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  sleep 0.1 # polling a file for a line another process writes; no race to hide
done
if [[ -z $port ]]; then
  echo "run-pair: the server did not print 'listening on HOST:PORT':" >&2
  cat "$work/server.out" >&2
  exit 1
fi

client_status=0
# shellcheck disable=SC2086
printf '%b' "$input" | bash "$here/../../scripts/wine-run.sh" "$prefix" "$client" --port "$port" $client_args \
  >"$work/client.out" 2>&1 || client_status=$?

server_status=0
if [[ ${RUN_PAIR_SERVER_STAYS:-0} == 1 ]]; then
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
fi
for _ in $(seq 600); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $server_pid ]]; then
  : # stopped above
elif kill -0 "$server_pid" 2>/dev/null; then
  echo "run-pair: the server did not exit after the client finished" >&2
  server_status=1
else
  wait "$server_pid" || server_status=$?
  server_pid=
fi

echo "--- client (exit $client_status)"
cat "$work/client.out"
echo "--- server (exit $server_status)"
cat "$work/server.out"
[[ $client_status -eq 0 && $server_status -eq 0 ]]
