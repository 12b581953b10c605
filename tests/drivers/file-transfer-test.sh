#!/usr/bin/env bash
# Runs file_server and file_client under Wine for one scenario and checks what
# the server's directory (and the client's downloads) hold afterwards:
#   file-transfer-test.sh PREFIX SERVER.exe CLIENT.exe SCENARIO
# SCENARIO:
#   intact       upload a 100 MiB file of seeded random bytes; the stored copy must
#                equal it byte for byte (cmp)
#   check-value  upload the 3 bytes "abc", whose SHA-256 is the standard
#                ba7816bf...f20015ad (FIPS 180-2)
#   abort        the client resets the connection mid-upload (--abort-after)
#   close        the client closes its side mid-upload (--close-after)
#   phases       an upload broken off at every phase (right after ready, after
#                1 byte, mid-way, 1 byte short, all data but no end packet),
#                by a reset and by a close: never a partial file
#   refuse       an unsafe name (../escape.bin) must be refused, upload and download
#   interrupt    Ctrl+C on the server while an upload is half done
#   download     download a 100 MiB file; the copy must equal it (cmp), no .part left
#   downloads    20 clients download one 8 MiB file at once; every copy equal
#   download-abort  the client resets mid-download: the server reports it and
#                goes on, the client leaves no partial file
#   download-stall  the client stops reading mid-download: the server drops it
#                after --stall-timeout (a part not taken in time) and goes on
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
  if [[ -z $port ]]; then
    cat server.out
    # A server that ended before its first line: say how (under Wine with
    # WINEDEBUG=-all a crash prints nothing, and only its status tells).
    if ! kill -0 "$server_pid" 2>/dev/null; then
      local status=0
      wait "$server_pid" || status=$?
      server_pid=
      echo "the server ended before it listened, exit status $status"
    fi
    echo "verdict: FAILED: no 'listening on' line"
    exit 1
  fi
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

# Runs the client with "--port PORT" and the given arguments; its output goes
# to client.out, its status to client_status.
run_client() {
  client_status=0
  timeout 100 bash "$here/../../scripts/wine-run.sh" "$prefix" "$client" --port "$port" "$@" >client.out 2>&1 </dev/null ||
    client_status=$?
}

# As tests/drivers/run-pair.sh: the server for one session, the client with
# "--port PORT" and the given arguments; prints both outputs and sets
# client_status and server_status.
run_pair() {
  start_server --sessions 1
  run_client "$@"
  wait_server
  echo "--- client (exit $client_status)"
  cat client.out
  echo "--- server (exit $server_status)"
  cat server.out
}

# A 64 MiB download broken off by the client after 1 MiB (FLAG: --abort-after
# or --stall-after), with the server's --stall-timeout SECONDS, then a small
# download on the same server: the first leaves no partial file, the second
# arrives whole, the server exits 0. WHAT names the broken one in the output.
broken_download() {
  local stall_timeout=$1 what=$2 flag=$3
  seeded_bytes $((64 * 1024 * 1024)) >store/big.bin
  printf 'small\n' >store/small.bin
  start_server --sessions 2 --stall-timeout "$stall_timeout"
  run_client --get big.bin --out got.bin "$flag" $((1024 * 1024))
  echo "--- $what download (exit $client_status)"
  cat client.out
  local broken_status=$client_status
  # The server goes on: the next client gets its file.
  run_client --get small.bin --out small-copy.bin
  echo "--- next download (exit $client_status)"
  cat client.out
  wait_server
  echo "--- server (exit $server_status)"
  cat server.out
  [[ $broken_status == 1 && $client_status == 0 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
  [[ ! -e got.bin && ! -e got.bin.part ]] || { echo "verdict: FAILED: a partial download was left"; exit 1; }
  cmp store/small.bin small-copy.bin || { echo "verdict: FAILED: the next download differs"; exit 1; }
  echo "verdict: ok: the $what download left nothing, the server served the next one"
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
    printf 'abc' >src/abc.txt
    run_pair src/abc.txt
    [[ $client_status == 0 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    cmp src/abc.txt store/abc.txt || { echo "verdict: FAILED: the stored file differs"; exit 1; }
    echo "verdict: ok: store/abc.txt is identical to the source (cmp)"
    ;;
  abort | close)
    seeded_bytes $((8 * 1024 * 1024)) >src/big.bin
    run_pair "--$scenario-after" $((2 * 1024 * 1024)) src/big.bin
    [[ $client_status == 1 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    expect_nothing_stored big.bin
    ;;
  phases)
    size=$((1024 * 1024))
    seeded_bytes $size >src/big.bin
    start_server --sessions 10
    for how in abort close; do
      for after in 0 1 $((size / 2)) $((size - 1)) $size; do
        # The client must get as far as breaking off on purpose. A connection
        # the system failed before the server accepted it (the server drops
        # it and counts it in failed_accepts; seen once under Wine) tests no
        # phase and is no session: it is said, and the phase is run again.
        for attempt in 1 2 3; do
          run_client "--$how-after" "$after" src/big.bin
          [[ $client_status == 1 ]] && grep -q "on purpose (--$how-after" client.out && break
          echo "--$how-after $after, attempt $attempt: the client stopped before that phase (exit $client_status):"
          cat client.out
          [[ $client_status == 1 && $attempt != 3 ]] || { cat server.out; echo "verdict: FAILED: --$how-after $after"; exit 1; }
        done
        # The server deletes big.bin.part when it sees the end of the
        # connection, which may come a moment after the client exits.
        for _ in $(seq 100); do
          [[ -z $(ls -A store) ]] && break
          sleep 0.1 # polling a directory another process writes
        done
        if [[ -n $(ls -A store) ]]; then
          cat server.out
          echo "verdict: FAILED: after --$how-after $after the directory holds: $(stored)"
          exit 1
        fi
        echo "--$how-after $after: nothing stored"
      done
    done
    wait_server
    cat server.out
    [[ $server_status == 0 ]] || { echo "verdict: FAILED (server exit status)"; exit 1; }
    echo "verdict: ok: 10 uploads broken off at every phase, no big.bin and no big.bin.part left"
    ;;
  refuse)
    printf 'should never be stored\n' >src/escape.bin
    printf 'outside --dir\n' >secret.bin
    start_server --sessions 2
    run_client --as ../escape.bin src/escape.bin
    echo "--- upload client (exit $client_status)"
    cat client.out
    upload_status=$client_status
    run_client --get ../secret.bin --out stolen.bin
    echo "--- download client (exit $client_status)"
    cat client.out
    wait_server
    echo "--- server (exit $server_status)"
    cat server.out
    [[ $upload_status == 1 && $client_status == 1 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    [[ ! -e escape.bin ]] || { echo "verdict: FAILED: escape.bin was written outside the directory"; exit 1; }
    [[ ! -e stolen.bin && ! -e stolen.bin.part ]] || { echo "verdict: FAILED: a file outside the directory was sent"; exit 1; }
    expect_nothing_stored escape.bin
    ;;
  download)
    seeded_bytes $((100 * 1024 * 1024)) >store/big.bin
    start=$(date +%s%N)
    run_pair --get big.bin --out got.bin
    echo "server start to exit, client included: $((($(date +%s%N) - start) / 1000000)) ms"
    [[ $client_status == 0 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    cmp store/big.bin got.bin || { echo "verdict: FAILED: the downloaded file differs"; exit 1; }
    [[ ! -e got.bin.part ]] || { echo "verdict: FAILED: got.bin.part left"; exit 1; }
    echo "verdict: ok: got.bin is identical to store/big.bin (cmp), no got.bin.part left"
    ;;
  downloads)
    clients=20
    seeded_bytes $((8 * 1024 * 1024)) >store/shared.bin
    # A part not taken within 10 s ends its transfer (see download-abort).
    start_server --sessions $clients --stall-timeout 10
    pids=()
    for i in $(seq $clients); do
      timeout 100 bash "$here/../../scripts/wine-run.sh" "$prefix" "$client" --port "$port" --get shared.bin \
        --out "copy$i.bin" >"client$i.out" 2>&1 </dev/null &
      pids+=($!)
    done
    failed=0
    for i in $(seq $clients); do
      exit_status=0
      wait "${pids[$((i - 1))]}" || exit_status=$?
      if ((exit_status != 0)); then
        echo "client $i failed (exit $exit_status):"
        cat "client$i.out"
        failed=1
      fi
    done
    wait_server
    cat server.out
    [[ $failed == 0 && $server_status == 0 ]] || { echo "verdict: FAILED (exit statuses)"; exit 1; }
    for i in $(seq $clients); do
      cmp store/shared.bin "copy$i.bin" || { echo "verdict: FAILED: copy$i.bin differs"; exit 1; }
    done
    echo "verdict: ok: $clients concurrent downloads, every copy identical to store/shared.bin (cmp)"
    ;;
  download-abort)
    # Under Wine a transfer waiting for room in the connection now and then
    # misses the reset (docs/platform-notes.md): then the part's stall
    # timeout ends it, as it would end one whose client stopped reading.
    broken_download 5 reset --abort-after
    ;;
  download-stall)
    broken_download 1 stalled --stall-after
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
    echo "usage: $0 PREFIX SERVER.exe CLIENT.exe intact|check-value|abort|close|phases|refuse|interrupt|download|downloads|download-abort|download-stall" >&2
    exit 2
    ;;
esac
