#!/usr/bin/env bash
# Runs file_server and file_client under Wine for one scenario and checks what
# the server's directory holds afterwards:
#   file-transfer-test.sh PREFIX SERVER.exe CLIENT.exe SCENARIO
# SCENARIO:
#   intact       a 100 MiB file of seeded random bytes; the stored copy must
#                equal it byte for byte (cmp)
#   check-value  the 9 bytes "123456789", whose CRC-32 is the standard cbf43926
#   abort        the client resets the connection mid-transfer (--abort-after)
#   close        the client closes its side mid-transfer (--close-after)
#   refuse       an unsafe name (../escape.bin) must be refused
#   interrupt    Ctrl+C on the server while an upload is half done
# Prints the programs' output as tests/drivers/run-pair.sh does, then a line that starts
# with "verdict: ok" only if the directory holds exactly what it should: the
# file when it was stored, neither NAME nor NAME.part otherwise. Test files
# are generated in a temporary directory and removed; nothing is left running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1 server=$2 client=$3 scenario=$4

work=$(mktemp -d)
server_pid=
cleanup() {
  local status=$?
  exec 3>&- 2>/dev/null || true
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  # ctest reads this line: a test that matches output ignores exit codes.
  if ((status != 0)); then echo "file-transfer-test: FAILED (exit status $status)"; fi
}
trap cleanup EXIT
# The programs run in the work directory: relative paths mean the same to
# Wine and to this script.
cd "$work"
mkdir src store

# Deterministic bytes of every value (a text-mode or 0x1A bug would show):
# AES-CTR over zeros, keyed by a fixed passphrase (openssl: scripts/setup.sh).
seeded_bytes() {
  head -c "$1" < <(openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:portico -in /dev/zero 2>/dev/null)
}

# Starts the server in the background (output in server.out) and sets `port`
# from its first line, "listening on HOST:PORT".
start_server() {
  : >server.out # exists before the server opens it: the loop below polls it
  bash "$here/../../scripts/wine-run.sh" "$prefix" "$server" --port 0 --dir store "$@" >server.out 2>&1 </dev/null &
  server_pid=$!
  port=
  for _ in $(seq 300); do
    first=$(head -n 1 server.out | tr -d '\r')
    if [[ $first == "listening on "* ]]; then
      port=${first##*:}
      break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1 # polling a file another process writes
  done
  [[ -n $port ]] || { cat server.out; echo "verdict: FAILED: no 'listening on' line"; exit 1; }
}

# Waits up to 60 s for the server to exit; sets server_status.
wait_server() {
  for _ in $(seq 600); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  server_status=0
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "file-transfer-test: the server did not exit within 60 s"
    server_status=timeout
  else
    wait "$server_pid" || server_status=$?
    server_pid=
  fi
}

# As tests/drivers/run-pair.sh: the server for one session, the client with
# "--port PORT" and the given arguments; prints both outputs and sets
# client_status and server_status.
run_pair() {
  start_server --sessions 1
  client_status=0
  timeout 100 bash "$here/../../scripts/wine-run.sh" "$prefix" "$client" --port "$port" "$@" >client.out 2>&1 </dev/null ||
    client_status=$?
  wait_server
  echo "--- client (exit $client_status)"
  cat client.out
  echo "--- server (exit $server_status)"
  cat server.out
}

# shellcheck disable=SC2012 # the names are our own
stored() { ls -A store | tr '\n' ' '; }

# The directory must be empty: no NAME, no NAME.part.
expect_nothing_stored() {
  local name=$1
  if [[ -n $(ls -A store) ]]; then
    echo "verdict: FAILED: the directory holds: $(stored)"
    exit 1
  fi
  echo "verdict: ok: no $name and no $name.part left"
}

case $scenario in
  intact)
    seeded_bytes $((100 * 1024 * 1024)) >src/big.bin
    start=$(date +%s%N)
    run_pair src/big.bin
    echo "server start to exit, client included: $((($(date +%s%N) - start) / 1000000)) ms"
    [[ $client_status == 0 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    [[ $(stored) == "big.bin " ]] || { echo "verdict: FAILED: the directory holds: $(stored)"; exit 1; }
    cmp src/big.bin store/big.bin || { echo "verdict: FAILED: the stored file differs"; exit 1; }
    echo "verdict: ok: store/big.bin is identical to the source (cmp), no big.bin.part left"
    ;;
  check-value)
    printf '123456789' >src/digits.txt
    run_pair src/digits.txt
    [[ $client_status == 0 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    cmp src/digits.txt store/digits.txt || { echo "verdict: FAILED: the stored file differs"; exit 1; }
    echo "verdict: ok: store/digits.txt is identical to the source (cmp)"
    ;;
  abort | close)
    seeded_bytes $((8 * 1024 * 1024)) >src/big.bin
    run_pair "--$scenario-after" $((2 * 1024 * 1024)) src/big.bin
    [[ $client_status == 1 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    expect_nothing_stored big.bin
    ;;
  refuse)
    printf 'should never be stored\n' >src/escape.bin
    run_pair --as ../escape.bin src/escape.bin
    [[ $client_status == 1 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    [[ ! -e escape.bin ]] || { echo "verdict: FAILED: escape.bin was written outside the directory"; exit 1; }
    expect_nothing_stored escape.bin
    ;;
  interrupt)
    # As tests/drivers/interrupt-test.sh, with a connection that is half way
    # through an upload of half.bin.
    start_server
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    # Packets as file_protocol.hpp defines them (u16 size with the header,
    # u16 type, little-endian): file_header {size 1000, "half.bin"}, then one
    # data packet of 5 bytes. The other 995 never come.
    printf '\x14\x00\x01\x00\xe8\x03\x00\x00\x00\x00\x00\x00half.bin' >&3
    printf '\x09\x00\x02\x00hello' >&3
    for _ in $(seq 300); do
      grep -q "receiving half.bin" server.out && break
      sleep 0.1
    done
    during=$(stored)
    kill -INT "$server_pid"
    wait_server
    cat server.out
    echo "exit status $server_status"
    echo "during the upload the directory held: $during"
    [[ $server_status == 0 ]] || { echo "verdict: FAILED (exit status)"; exit 1; }
    [[ $during == "half.bin.part " ]] || { echo "verdict: FAILED: no half.bin.part during the upload"; exit 1; }
    expect_nothing_stored half.bin
    ;;
  *)
    echo "usage: $0 PREFIX SERVER.exe CLIENT.exe intact|check-value|abort|close|refuse|interrupt" >&2
    exit 2
    ;;
esac
