#!/usr/bin/env bash
# User-space instructions per echo of the native benchmark servers, counted by
# callgrind: what one 64-byte round trip costs each server in its own code and
# its libraries (libc, libstdc++, liburing), not in the kernel. A count, not a
# time: the same on a loaded machine as on a quiet one.
#
# Method. Each server runs under `valgrind --tool=callgrind` in echo mode with
# one thread. A python3 client (not under valgrind) connects one socket and
# makes round trips of 64 bytes, one in flight at a time. The run's total of
# instructions (Ir, from callgrind's "totals:" line) is a fixed cost (start,
# accept, shutdown) plus a cost per round trip, so two runs that differ only in
# their number of round trips give the cost of one: the difference of the totals
# divided by the difference of the round trips.
#
# Ending a run. The server is started with --exit-after 1: the close of the
# client's connection ends the process from the thread that handled it. Asking
# it to quit on stdin does not work under valgrind 3.19, which runs
# io_uring_enter as a call that does not block, holding the lock that lets one
# thread run at a time: while the ring's thread waits in it, the control thread
# never runs.
#
#   bench/callgrind_echo.sh [--build-dir DIR] [--round-trips N] [--json FILE] [IMPL...]
#   defaults: build/linux-bench, 20000 (the second run makes 2N),
#             portico asio asio_uring raw_uring
#   --json FILE: also stores the counts in FILE (the native results,
#             bench/results/native.json), as "instructions_per_echo", for
#             bench/report.py; FILE must exist.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/linux-bench
round_trips=20000
json=
impls=()
while (($#)); do
  case $1 in
    --build-dir) build=$(realpath -m "$2"); shift 2 ;;
    --round-trips) round_trips=$2; shift 2 ;;
    --json) json=$(realpath -m "$2"); shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) impls+=("$1"); shift ;;
  esac
done
((${#impls[@]})) || impls=(portico asio asio_uring raw_uring)
command -v valgrind >/dev/null || { echo "callgrind_echo: valgrind is missing (apt-get install valgrind)" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "| server | instructions per echo | round trips (runs) |"
echo "|---|--:|--:|"
for impl in "${impls[@]}"; do
  exe=$build/bench/servers/bench_$impl
  [[ -x $exe ]] || { echo "callgrind_echo: $exe is missing (cmake --build --preset linux-bench)" >&2; exit 2; }
  python3 - "$exe" "$impl" "$out" "$round_trips" <<'EOF'
import os, socket, subprocess, sys

exe, impl, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def run(asked):
    """Instructions of one server run under callgrind that echoes `asked` round trips."""
    dump = os.path.join(out, f"callgrind.{impl}.{asked}")
    server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", "--", exe,
                               "--mode", "echo", "--threads", "1", "--exit-after", "1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    if not line.startswith("listening on "):
        sys.exit(f"callgrind_echo: {impl}: expected 'listening on', got {line!r}")
    port = int(line.strip().rsplit(":", 1)[1])
    message = bytes(range(64))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(asked):
            s.sendall(message)
            received = 0
            while received < len(message):
                chunk = s.recv(len(message) - received)
                if not chunk:
                    sys.exit(f"callgrind_echo: {impl} closed the connection")
                received += len(chunk)
    if server.wait(timeout=600) != 0:
        sys.exit(f"callgrind_echo: {impl} exited with {server.returncode}")
    with open(dump) as f:
        for l in f:
            if l.startswith("totals:"):
                return int(l.split()[1])
    sys.exit(f"callgrind_echo: no totals in {dump}")


first, second = run(n), run(2 * n)
print(f"| {impl} | {(second - first) / n:,.0f} | {n:,} / {2 * n:,} |", flush=True)
with open(os.path.join(out, "counts"), "a") as f:
    f.write(f"{impl} {(second - first) / n:.1f}\n")
EOF
done
if [[ -n $json ]]; then
  python3 - "$json" "$out/counts" "$round_trips" <<'EOF'
import datetime, json, sys
path, counts, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path) as f:
    results = json.load(f)
with open(counts) as f:
    per_echo = {impl: float(value) for impl, value in (line.split() for line in f)}
results["instructions_per_echo"] = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "round_trips": n, "per_echo": per_echo}
with open(path, "w") as f:
    json.dump(results, f, indent=1)
    f.write("\n")
EOF
fi
