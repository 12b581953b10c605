#!/usr/bin/env bash
# Sets up everything, builds the echo and chat examples and runs them: an echo
# client sending typed lines, 4 echo clients at once sending random payloads
# that must come back intact, then a chat room of 5 scripted users who must
# all hear every line.
#   demo.sh            for Windows with mingw-w64 GCC, run under Wine
#   demo.sh --native   for Linux with GCC, run natively over io_uring (the
#                      backend being built: docs/design/uring.md)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

native=0
case ${1:-} in
  --native) native=1 ;;
  "") ;;
  *) echo "usage: demo.sh [--native]" >&2; exit 2 ;;
esac

bash scripts/setup.sh >/dev/null

if ((native)); then
  preset=linux-gcc
  build=$root/build/$preset
  prefix=native # tests/drivers run the programs themselves, no Wine
  exe=
else
  preset=mingw-gcc
  build=$root/build/$preset
  prefix=$build/wineprefix
  exe=.exe
  trap 'bash "$root/tests/drivers/wine-server.sh" stop "$prefix"' EXIT
fi

cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target echo_server echo_client chat_server chat_client >/dev/null
((native)) || bash tests/drivers/wine-server.sh start "$prefix"

server=$build/examples/echo_server$exe
client=$build/examples/echo_client$exe
echo "== echo_server --port 0 --sessions 1, echo_client typing three lines"
bash tests/drivers/run-pair.sh "$prefix" "$server" "--port 0 --sessions 1" "$client" "" \
  'hello, server\nthis is portico\nEXIT\n'
echo
echo "== echo_server --port 0 --sessions 4, echo_client --count 100 --size 16384 --clients 4"
bash tests/drivers/run-pair.sh "$prefix" "$server" "--port 0 --sessions 4" "$client" "--count 100 --size 16384 --clients 4"
echo
echo "== chat_server --port 0 --sessions 5, chat_client --users 5 --messages 20"
bash tests/drivers/run-pair.sh "$prefix" "$build/examples/chat_server$exe" "--port 0 --sessions 5" \
  "$build/examples/chat_client$exe" "--users 5 --messages 20"
