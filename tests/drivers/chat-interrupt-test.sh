#!/usr/bin/env bash
# Ctrl+C on a chat server with members in the room, as an operator stopping it
# in a terminal would:
#   chat-interrupt-test.sh PREFIX chat_server.exe chat_client.exe NAME...
# Starts the server, joins one interactive chat_client per NAME (each with its
# stdin held open, so only the server can end the session), waits until the
# server has announced every one, sends SIGINT (Wine turns it into
# CTRL_C_EVENT), and waits for the server to exit. Then ends each client's
# input and prints every output and exit status. Fails if the server or a
# client is still running 30 s later. Nothing is left running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1 server=$2 client=$3
shift 3
names=("$@")

work=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  for fd in "${input_fds[@]:-}"; do
    [[ -n $fd ]] && exec {fd}>&- 2>/dev/null || true
  done
  for pid in "${pids[@]:-}"; do
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
  # ctest reads this line: a test that matches output ignores exit codes.
  if ((status != 0)); then echo "chat-interrupt-test: FAILED (exit status $status)"; fi
}
input_fds=()
trap cleanup EXIT

# Waits up to 30 s for a process to exit; its status goes to the named variable.
wait_exit() {
  local pid=$1 __out=$2
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1 # polling another process; no race to hide
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf -v "$__out" '%s' "still running"
    return
  fi
  local code=0
  wait "$pid" || code=$?
  printf -v "$__out" '%s' "$code"
}

# Created before the server starts, so the poll below never reads a missing file.
: >"$work/server.out"
# wine-run.sh execs Wine: the PID is the Windows process, so the signal reaches it.
bash "$here/../../scripts/wine-run.sh" "$prefix" "$server" --port 0 >"$work/server.out" 2>&1 </dev/null &
server_pid=$!
pids+=("$server_pid")

port=
for _ in $(seq 300); do
  first=$(head -n 1 "$work/server.out" | tr -d '\r')
  if [[ $first == "listening on "* ]]; then
    port=${first##*:}
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $port ]] || { echo "chat-interrupt-test: no 'listening on' line:" >&2; cat "$work/server.out" >&2; exit 1; }

client_pids=()
for name in "${names[@]}"; do
  mkfifo "$work/$name.in"
  bash "$here/../../scripts/wine-run.sh" "$prefix" "$client" --port "$port" --name "$name" \
    <"$work/$name.in" >"$work/$name.out" 2>&1 &
  client_pids+=($!)
  pids+=($!)
  # Held open by us: the client reads no end of input until we say so.
  exec {fd}>"$work/$name.in"
  input_fds+=("$fd")
done

for name in "${names[@]}"; do
  for _ in $(seq 300); do
    grep -q "^$name joined" "$work/server.out" && break
    sleep 0.1
  done
done

kill -INT "$server_pid"
wait_exit "$server_pid" server_status

for fd in "${input_fds[@]}"; do exec {fd}>&-; done
input_fds=()
statuses=()
for pid in "${client_pids[@]}"; do
  wait_exit "$pid" status
  statuses+=("$status")
done

ok=true
[[ $server_status == 0 ]] || ok=false
for i in "${!names[@]}"; do
  echo "--- client ${names[$i]} (exit ${statuses[$i]})"
  cat "$work/${names[$i]}.out"
  [[ ${statuses[$i]} == 0 ]] || ok=false
done
echo "--- server"
cat "$work/server.out"
echo "exit status $server_status"
$ok
