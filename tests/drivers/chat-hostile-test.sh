#!/usr/bin/env bash
# chat_server against hostile and careless clients (chat_hostile_client.py):
# a connection that never joins, refused nicknames, refused lines. Then the
# server's log must hold no control byte the clients sent.
#   chat-hostile-test.sh PREFIX chat_server.exe
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1 server=$2
join_timeout=2

work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

: >"$work/server.out"
# 6 sessions: the silent one, four refused joins, mallory.
bash "$here/../../scripts/wine-run.sh" "$prefix" "$server" --port 0 --sessions 6 --join-timeout "$join_timeout" \
  >"$work/server.out" 2>&1 </dev/null &
server_pid=$!
port=
for _ in $(seq 300); do
  first=$(head -n 1 "$work/server.out" | tr -d '\r')
  if [[ $first == "listening on "* ]]; then
    port=${first##*:}
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1 # polling a file for a line another process writes; no race to hide
done
[[ -n $port ]] || { echo "chat-hostile-test: no 'listening on' line" >&2; cat "$work/server.out" >&2; exit 1; }

status=0
python3 "$here/chat_hostile_client.py" "$port" "$join_timeout" || status=1
for _ in $(seq 300); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
  echo "FAILED: the server did not exit after its 6 sessions"
  status=1
else
  wait "$server_pid" || status=1
  server_pid=
fi
echo "--- server"
cat -v "$work/server.out"
# Only the server's own line ends may be there: no escape, no other control byte.
if LC_ALL=C tr -d '\r\n' <"$work/server.out" | LC_ALL=C grep -q '[[:cntrl:]]'; then
  echo "FAILED: control bytes from the network reached the server's log"
  status=1
else
  echo "ok: the server's log holds no control byte"
fi
if grep -q "forged" "$work/server.out"; then
  echo "FAILED: a forged log line got through"
  status=1
fi
exit $status
