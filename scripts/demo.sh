#!/usr/bin/env bash
# Sets up everything, builds the echo server and client for Windows with
# mingw-w64 GCC and runs them under Wine: first a client sending typed lines,
# then 4 clients at once sending random payloads that must come back intact.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/setup.sh >/dev/null

build=$root/build/mingw-gcc
prefix=$build/wineprefix
trap 'bash "$root/scripts/wine-server.sh" stop "$prefix"' EXIT

cmake --preset mingw-gcc >/dev/null
cmake --build --preset mingw-gcc --target echo_server echo_client >/dev/null
bash scripts/wine-server.sh start "$prefix"

server=$build/examples/echo_server.exe
client=$build/examples/echo_client.exe
echo "== echo_server --port 0 --sessions 1, echo_client typing three lines"
bash scripts/run-pair.sh "$prefix" "$server" "--port 0 --sessions 1" "$client" "" \
  'hello, server\nthis is portico\nEXIT\n'
echo
echo "== echo_server --port 0 --sessions 4, echo_client --count 100 --size 16384 --clients 4"
bash scripts/run-pair.sh "$prefix" "$server" "--port 0 --sessions 4" "$client" "--count 100 --size 16384 --clients 4"
