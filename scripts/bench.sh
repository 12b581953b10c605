#!/usr/bin/env bash
# The server benchmark, end to end: installs what is missing (Debian packages),
# builds the three servers for Windows (preset mingw-bench) and the native load
# client, runs every scenario (bench/run.py) and writes docs/benchmarks.md with
# its charts (bench/report.py). Takes about 30 minutes with the defaults.
#   scripts/bench.sh [run.py options...]   e.g. --rounds 4 --only pingpong-64x64
#   scripts/bench.sh --smoke               CI's check that all of it still works:
#       the self-tests of the load client and the servers, then a few short
#       trials through the runner and the report, written under build/bench-smoke
#   scripts/bench.sh --native [run.py options...]   the native Linux servers (preset
#       linux-bench: portico and Asio over io_uring, Asio over epoll, a raw io_uring
#       floor), run directly, no Wine; then instructions per echo under callgrind
#       (bench/callgrind_echo.sh); results in bench/results/native.json and the
#       native section of docs/benchmarks.md (the Wine sections are left as they are)
#   scripts/bench.sh --native --smoke    the same checks as --smoke, natively, under
#       build/bench-smoke-native (and a spinning trial: run.py --idle-spin)
#   scripts/bench.sh --native --idle-spin 50 --results bench/results/native-spin.json
#       the native run with every server spinning when idle (the section after the
#       native one in docs/benchmarks.md; no callgrind)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh >/dev/null
# The runner and the charts: Debian's Python and gnuplot, not the repository's CI needs.
missing=()
for p in python3 gnuplot-nox util-linux; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S bench/load -B build/bench-load -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/bench-load

if [[ ${1:-} == --native ]]; then
  shift
  cmake --preset linux-bench >/dev/null
  cmake --build --preset linux-bench --target bench_portico bench_asio bench_asio_uring bench_raw_uring
  if [[ ${1:-} == --smoke ]]; then
    bash bench/load/selftest.sh build/bench-load
    for impl in portico asio asio_uring raw_uring; do bash bench/servers/selftest.sh --native "$impl" build/linux-bench; done
    out=build/bench-smoke-native
    # The Wine smoke's scenarios (download is not run natively).
    /usr/bin/python3 bench/run.py --native --rounds 2 --idle-rounds 1 --seconds 0.3 --warmup 0.1 \
      --only pingpong-1x64,packets-1x16,churn,fanout-10x64,mixed-10of500,idle-packet-100 --results "$out/native.json"
    # And the spinning run's section: every server with --idle-spin.
    /usr/bin/python3 bench/run.py --native --rounds 1 --seconds 0.3 --warmup 0.1 --idle-spin 20 \
      --only pingpong-1x64 --results "$out/native-spin.json"
    mkdir -p "$out/docs"
    /usr/bin/python3 bench/report.py --native-results "$out/native.json" --native-spin-results "$out/native-spin.json" \
      --docs "$out/docs"
    grep -q "## Native Linux: io_uring and epoll" "$out/docs/benchmarks.md"
    grep -q "every server spins for up to 20 µs when idle" "$out/docs/benchmarks.md"
    grep -q "| ping-pong, 1 connection, 64 B | msgs/s | [0-9]" "$out/docs/benchmarks.md"
    grep -q "| fan-out, 1 sender to 10 receivers, 64 B | deliveries/s | [0-9]" "$out/docs/benchmarks.md"
    grep -q "| 100 idle connections, lean framed echo | [0-9]" "$out/docs/benchmarks.md"
    exit 0
  fi
  /usr/bin/python3 bench/run.py --native "$@"
  # Instructions per echo (callgrind), into the results the runner just wrote,
  # unless it wrote them elsewhere.
  if [[ " $* " != *" --results "* ]]; then
    if ! command -v valgrind >/dev/null; then
      sudo_cmd=()
      if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
      DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends valgrind
    fi
    bash bench/callgrind_echo.sh --json bench/results/native.json
  fi
  /usr/bin/python3 bench/report.py
  exit 0
fi

cmake --preset mingw-bench >/dev/null
cmake --build --preset mingw-bench --target bench_portico bench_asio bench_raw

if [[ ${1:-} == --smoke ]]; then
  bash bench/load/selftest.sh build/bench-load
  for impl in portico asio raw; do bash bench/servers/selftest.sh "$impl" build/mingw-bench; done
  out=build/bench-smoke
  # The scale scenarios in miniature: 10 active among 500 connections, 100 lean idle ones.
  /usr/bin/python3 bench/run.py --rounds 2 --idle-rounds 1 --seconds 0.3 --warmup 0.1 \
    --only pingpong-1x64,packets-1x16,churn,fanout-10x64,mixed-10of500,idle-packet-100 --results "$out/latest.json"
  mkdir -p "$out/docs"
  /usr/bin/python3 bench/report.py --results "$out/latest.json" --docs "$out/docs"
  grep -q "ping-pong, 1 connection, 64 B" "$out/docs/benchmarks.md"
  grep -q "fan-out, 1 sender to 10 receivers, 64 B" "$out/docs/benchmarks.md"
  grep -q "ping-pong, 64 B on 10 of 500 connections" "$out/docs/benchmarks.md"
  grep -q "(idle-packet-100)" "$out/docs/benchmarks.md"
  grep -q "| worst connection |" "$out/docs/benchmarks.md"
  exit 0
fi
/usr/bin/python3 bench/run.py "$@"
/usr/bin/python3 bench/report.py
