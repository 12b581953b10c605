#!/usr/bin/env bash
# Self-test of the load client: builds it and its test server, runs every mode
# briefly against the test server and checks each JSON result (the fields,
# messages > 0, errors == 0, exit status 0), checks that a corrupting server
# and a refused port are reported as errors, that one slow connection among
# fast ones shows as the worst connection's median, and that idle connections
# stay open on the server while the client holds them.
#   bench/load/selftest.sh [BUILD_DIR]      default: build/bench-load
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build/bench-load}

cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" >/dev/null
client=$build/load_client
work=$(mktemp -d)
server_pid=
client_pid=
port=
failures=0

cleanup() {
  exec 3>&- 4>&-
  for pid in $client_pid $server_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# start_server MODE [--corrupt]: a test server with its stdin on fd 3.
start_server() {
  rm -f "$work/server.in" "$work/server.out"
  mkfifo "$work/server.in"
  "$build/test_server" --mode "$@" <"$work/server.in" >"$work/server.out" &
  server_pid=$!
  exec 3>"$work/server.in"
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.out")
    [[ -n $port ]] && return
    sleep 0.05
  done
  echo "selftest: the test server did not start" >&2
  exit 1
}

# stop_server: the end of its stdin makes it close everything and exit.
stop_server() {
  exec 3>&-
  wait "$server_pid"
  server_pid=
}

# check EXPECT NAME STATUS: checks the client's JSON in $work/out.json; EXPECT
# is "clean" (no errors, messages counted, status 0), "slow" (clean, and the
# first connection's 5 ms replies are the worst connection's median) or
# "errors" (errors counted, status 1).
check() {
  local expect=$1 name=$2 status=$3
  if python3 - "$expect" "$status" "$work/out.json" <<'EOF'; then
import json, sys

expect, status, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path) as f:
    lines = f.read().splitlines()
assert len(lines) == 1, f"{len(lines)} lines on stdout"
r = json.loads(lines[0])
fields = ["mode", "connections", "idle_connections", "size", "depth", "direction", "duration_s", "messages",
          "msgs_per_s", "bytes_per_s", "rtt_us", "errors"]
assert list(r) == fields, f"fields {list(r)}"
for key in ("connections", "idle_connections", "size", "messages", "errors"):
    assert isinstance(r[key], int), f"{key} is not an integer"
assert (r["depth"] is None) == (r["mode"] not in ("pipeline", "fanout")), "depth"
assert (r["direction"] is None) == (r["mode"] != "bulk"), "direction"
if expect in ("clean", "slow"):
    assert status == 0, f"exit status {status}"
    assert r["errors"] == 0, f"{r['errors']} errors"
    assert r["messages"] > 0 and r["msgs_per_s"] > 0 and r["bytes_per_s"] > 0, "nothing counted"
    assert r["duration_s"] > 0, "no duration"
    if r["mode"] == "bulk":
        assert r["rtt_us"] is None, "rtt for bulk"
    else:
        rtt = r["rtt_us"]
        assert list(rtt) == ["p50", "p99", "p999", "max", "worst_connection_p50", "best_connection_p50",
                             "connections_timed"], f"rtt fields {list(rtt)}"
        assert 0 < rtt["p50"] <= rtt["p99"] <= rtt["p999"] <= rtt["max"], f"rtt {rtt}"
        assert isinstance(rtt["connections_timed"], int), "connections_timed is not an integer"
        timed = r["connections"] + (1 if r["mode"] == "fanout" else 0)
        assert 0 < rtt["connections_timed"] <= timed, f"connections_timed {rtt['connections_timed']}"
        # The overall median lies between the connections' own (within the
        # two histograms' resolution).
        assert 0 < rtt["best_connection_p50"] <= rtt["worst_connection_p50"] <= rtt["max"], f"rtt {rtt}"
        assert rtt["best_connection_p50"] <= 1.05 * rtt["p50"] <= 1.1 * rtt["worst_connection_p50"], f"rtt {rtt}"
        if expect == "slow":
            assert rtt["worst_connection_p50"] >= 5000 > rtt["p50"], f"the slow connection is not the worst: {rtt}"
            assert rtt["best_connection_p50"] < 5000, f"rtt {rtt}"
else:
    assert status == 1, f"exit status {status}"
    assert r["errors"] > 0, "no errors reported"
EOF
    printf '%-26s %s\n' "$name" "$(cat "$work/out.json")"
  else
    echo "FAILED: $name (exit status $status); stderr:"
    sed 's/^/  /' "$work/err.txt"
    failures=$((failures + 1))
  fi
}

# run EXPECT NAME CLIENT-ARGS...: one short run against the current server.
run() {
  local expect=$1 name=$2 status=0
  shift 2
  timeout 60 "$client" --port "$port" --duration 1 --warmup 0.2 "$@" \
    >"$work/out.json" 2>"$work/err.txt" </dev/null || status=$?
  check "$expect" "$name" "$status"
}

start_server echo
run clean pingpong --mode pingpong --connections 4 --size 64
run clean pingpong-large --mode pingpong --connections 2 --size 200000
run clean churn --mode churn --connections 4
run clean burst --mode burst --connections 200
run clean idle --mode idle --connections 100
# 4 active among 300 idle: only the active ones are timed.
run clean pingpong-idle --mode pingpong --connections 4 --idle-connections 300 --size 64
run clean pingpong-connect-first --mode pingpong --connections 300 --connect-first --size 64
run clean bulk-both --mode bulk --direction both --connections 2
stop_server

start_server packet
run clean pipeline --mode pipeline --connections 4 --depth 16 --size 64
run clean pipeline-empty --mode pipeline --connections 2 --depth 4 --size 0
run clean pipeline-largest --mode pipeline --connections 1 --depth 3 --size 65531
run clean pingpong-framed --mode pingpong --connections 4 --framed --size 60
run clean idle-framed --mode idle --connections 50 --framed --size 60
# A server that sends the sender's packets back to it, not to the others.
run errors fanout-echoed --mode fanout --connections 2
stop_server

start_server sink
run clean bulk-oneway --mode bulk --direction oneway --connections 2
stop_server

start_server fanout
run clean fanout --mode fanout --connections 10 --depth 16 --size 64
run clean fanout-lockstep --mode fanout --connections 50 --depth 1 --size 8
run clean fanout-largest --mode fanout --connections 3 --depth 2 --size 65531
stop_server

# Downloads of a file written by the client itself, so it can check each byte;
# a server that corrupts one must be caught.
"$client" --write-file "$work/download.bin" --size 300000
start_server download --file "$work/download.bin"
run clean download --mode download --connections 4 --size 300000
run errors download-short --mode download --connections 1 --size 299999
stop_server
start_server download --file "$work/download.bin" --corrupt
run errors download-corrupt --mode download --connections 2 --size 300000
stop_server

# Idle, held by stdin as the runner does it: the server must count the
# connections open while the client holds them.
start_server echo
rm -f "$work/client.in"
mkfifo "$work/client.in"
"$client" --port "$port" --mode idle --connections 50 --hold-stdin \
  <"$work/client.in" >"$work/out.json" 2>"$work/err.txt" &
client_pid=$!
exec 4>"$work/client.in"
for _ in $(seq 200); do
  grep -q '^idle: ' "$work/err.txt" && break
  sleep 0.05
done
echo stats >&3
for _ in $(seq 100); do
  grep -q '"open"' "$work/server.out" && break
  sleep 0.05
done
held=$(sed -n 's/.*"open":\([0-9]*\).*/\1/p' "$work/server.out")
exec 4>&-
status=0
wait "$client_pid" || status=$?
client_pid=
if grep -q '^idle: 50 connected$' "$work/err.txt" && [[ $held == 50 ]]; then
  check clean idle-hold-stdin "$status"
else
  echo "FAILED: idle-hold-stdin: server saw ${held:-?} open connections; client stderr:"
  sed 's/^/  /' "$work/err.txt"
  failures=$((failures + 1))
fi
stop_server

# One connection answered 5 ms late, three at once: the worst connection's
# median is the slow one's, the overall median the fast ones'.
start_server echo --slow-first
run slow pingpong-slow-first --mode pingpong --connections 4 --size 64
stop_server

# A server that closes connections silent for 200 ms: the idle ones must be
# reported, though the active ones are served throughout.
start_server echo --drop-quiet
run errors pingpong-idle-dropped --mode pingpong --connections 2 --idle-connections 20
stop_server

# Wrong echoes must be caught.
start_server echo --corrupt
run errors pingpong-corrupt --mode pingpong --connections 2
run errors bulk-both-corrupt --mode bulk --direction both
stop_server
start_server packet --corrupt
run errors pipeline-corrupt --mode pipeline --connections 2
run errors pingpong-framed-corrupt --mode pingpong --connections 2 --framed
stop_server
start_server fanout --straggler
run clean fanout-straggler --mode fanout --connections 5 --depth 4 --size 64
stop_server
start_server fanout --corrupt
run errors fanout-corrupt --mode fanout --connections 4
refused_port=$port
stop_server

# Nobody listens on the port now: connects are refused, and counted.
port=$refused_port
run errors pingpong-refused --mode pingpong --connections 3
run errors burst-refused --mode burst --connections 10
run errors fanout-refused --mode fanout --connections 3

if ((failures > 0)); then
  echo "selftest: $failures failed"
  exit 1
fi
echo "selftest: all passed"
