#!/usr/bin/env bash
# Checks a benchmark server against bench/PROTOCOL.md under Wine: builds it, runs it in each
# mode, drives it with a python3 (stdlib) client, checks the stats line, quits it, and leaves
# no Wine process behind.
#   bench/servers/selftest.sh [raw|asio|portico] [build-dir]     (default: raw, build/selftest-IMPL)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
impl=${1:-raw}
build=$(realpath -m "${2:-$root/build/selftest-$impl}")
prefix=$build/wineprefix

cmake --preset mingw-bench -B "$build" >/dev/null
cmake --build "$build" --target "bench_$impl"

bash "$root/tests/drivers/wine-server.sh" start "$prefix"
# The prefix is this build's own: stopping its wineserver ends whatever is left in it.
trap 'bash "$root/tests/drivers/wine-server.sh" stop "$prefix"' EXIT

python3 - "$root" "$prefix" "$build/bench/servers/bench_$impl.exe" "$impl" <<'EOF'
import json, os, random, select, socket, struct, subprocess, sys, threading, time

root, prefix, exe, impl = sys.argv[1:5]
rng = random.Random(1234)
STATS_KEYS = ["impl", "mode", "accepted", "open", "allocs", "frees", "alloc_bytes", "live_bytes",
              "win32_calls", "calls", "dequeue_calls", "completions"]


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Server:
    def __init__(self, mode, threads=1):
        self.mode = mode
        # timeout: a hung server must not hang the test; the EXIT trap ends what is left.
        self.process = subprocess.Popen(
            ["timeout", "120", "bash", os.path.join(root, "scripts/wine-run.sh"), prefix, exe,
             "--mode", mode, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.read_line(60)
        check(line.startswith("listening on 127.0.0.1:") and line.endswith("\n") and not line.endswith("\r\n"),
              f"first line: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def read_line(self, timeout):
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        check(ready, "no output from the server")
        return self.process.stdout.readline()

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stats(self):
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        line = self.read_line(30)
        stats = json.loads(line)
        check(list(stats) == STATS_KEYS, f"stats keys: {list(stats)}")
        check(stats["impl"] == impl and stats["mode"] == self.mode, f"stats names: {line}")
        check(stats["win32_calls"] == sum(stats["calls"].values()), "win32_calls is not the sum of calls")
        check(all(n > 0 for n in stats["calls"].values()), "calls lists a function never called")
        check(stats["allocs"] >= stats["frees"] and stats["live_bytes"] >= 0, "allocation counts")
        check(stats["alloc_bytes"] >= stats["live_bytes"], "alloc_bytes below live_bytes")
        dequeues = stats["calls"].get("GetQueuedCompletionStatus", 0) + stats["calls"].get("GetQueuedCompletionStatusEx", 0)
        check(stats["dequeue_calls"] <= dequeues, "more dequeues returned than made")
        return stats

    def wait_open(self, expected):
        deadline = time.time() + 20
        while True:
            stats = self.stats()
            if stats["open"] == expected:
                return stats
            check(time.time() < deadline, f"open stays {stats['open']}, expected {expected}")
            time.sleep(0.05)

    def quit(self, command="quit\n"):
        if command:
            self.process.stdin.write(command)
            self.process.stdin.flush()
        self.process.stdin.close()
        code = self.process.wait(60)
        check(code == 0, f"exit status {code}")


def recv_exactly(s, n):
    data = bytearray()
    while len(data) < n:
        chunk = s.recv(min(1 << 20, n - len(data)))
        check(chunk, f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def send_in_chunks(s, data, largest):
    # Sent from a thread: the server stops receiving while its own sends are blocked.
    def run():
        i = 0
        while i < len(data):
            n = rng.randint(1, largest)
            s.sendall(data[i:i + n])
            i += n
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def expect_eof(s):
    s.settimeout(20)
    try:
        check(s.recv(1) == b"", "data where the server should have closed")
    except ConnectionResetError:
        pass


def per_message(before, after, messages):
    calls = {k: round((after["calls"].get(k, 0) - before["calls"].get(k, 0)) / messages, 3)
             for k in after["calls"]}
    calls = {k: v for k, v in calls.items() if v}
    extra = {k: round((after[k] - before[k]) / messages, 3)
             for k in ["dequeue_calls", "completions", "allocs", "frees", "win32_calls"]}
    return {**calls, **extra}


def packet(type_, body):
    return struct.pack("<HH", 4 + len(body), type_) + body


def echo_test(threads):
    server = Server("echo", threads)
    s = server.connect()
    for _ in range(10):  # warm up: the first receive is the one that goes through the port
        s.sendall(b"w")
        recv_exactly(s, 1)
    before = server.stats()
    for i in range(1000):
        message = bytes([i % 251]) * 64
        s.sendall(message)
        check(recv_exactly(s, 64) == message, "echo differs")
    after = server.stats()
    check(after["accepted"] == 1 and after["open"] == 1, "one connection open")
    # The receive of the first message may have started before `before`: 999 at least.
    check(after["calls"].get("WSARecv", 0) - before["calls"].get("WSARecv", 0) >= 999, "fewer WSARecv than messages")
    print(f"echo --threads {threads}: stats after 1000 x 64 B:", json.dumps(after))
    print(f"echo --threads {threads}: per message:", per_message(before, after, 1000))

    big = os.urandom(3 << 20)  # more than the 64 KiB buffer, many times over
    sender = send_in_chunks(s, big, 200_000)
    check(recv_exactly(s, len(big)) == big, "bulk echo differs")
    sender.join()

    def client(seed):
        r = random.Random(seed)
        with server.connect() as c:
            for _ in range(100):
                data = os.urandom(r.randint(1, 70_000))
                sender = threading.Thread(target=c.sendall, args=(data,))
                sender.start()
                check(recv_exactly(c, len(data)) == data, "concurrent echo differs")
                sender.join()
    clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    s.close()
    stats = server.wait_open(0)
    check(stats["accepted"] == 9, f"accepted {stats['accepted']}")
    server.quit()


def packet_test():
    server = Server("packet")
    s = server.connect()
    s.sendall(packet(0, b""))  # warm up, as for echo
    recv_exactly(s, 4)
    before = server.stats()
    for i in range(1000):
        p = packet(i & 0xFFFF, bytes([i % 256]) * 60)
        s.sendall(p)
        check(recv_exactly(s, len(p)) == p, "packet differs")
    after = server.stats()
    print("packet: stats after 1000 x 64 B:", json.dumps(after))
    print("packet: per packet:", per_message(before, after, 1000))

    # Several packets in one send, the largest size included.
    batch = b"".join(packet(t, os.urandom(n)) for t, n in [(1, 0), (2, 1), (3, 100), (4, 65531), (5, 300)])
    s.sendall(batch)
    check(recv_exactly(s, len(batch)) == batch, "batched packets differ")

    # One packet split across sends: nothing comes back until it is whole.
    p = packet(7, os.urandom(1000))
    s.settimeout(0.3)
    for part in [p[:1], p[1:3], p[3:500], p[500:-1]]:
        s.sendall(part)
        try:
            check(not s.recv(1), "a partial packet was sent back")
        except socket.timeout:
            pass
    s.settimeout(30)
    s.sendall(p[-1:])
    check(recv_exactly(s, len(p)) == p, "split packet differs")

    # A stream of random packets in random chunks.
    stream = b"".join(packet(rng.randrange(65536), os.urandom(rng.choice([0, 1, 7, 500, 4000, 65531])))
                      for _ in range(500))
    sender = send_in_chunks(s, stream, 100_000)
    check(recv_exactly(s, len(stream)) == stream, "packet stream differs")
    sender.join()

    # A header whose size is below the header's closes the connection. The
    # answer to the packet before it may be sent first (raw, Asio) or dropped
    # with the connection (portico drops answers still queued when a stream
    # closes), but never cut short.
    s.sendall(packet(1, b"ok") + struct.pack("<HH", 3, 0))
    s.settimeout(20)
    received = b""
    try:
        while chunk := s.recv(100):
            received += chunk
    except ConnectionResetError:
        pass
    check(received in (b"", packet(1, b"ok")), f"before the bad header's close: {received!r}")
    s.close()
    server.wait_open(0)
    server.quit()


def sink_test():
    server = Server("sink")
    s = server.connect()
    before = server.stats()
    for i in range(1000):
        s.sendall(bytes([i % 256]) * 64)
        time.sleep(0.0005)  # one message per receive, mostly
    time.sleep(0.2)
    print("sink: stats after 1000 x 64 B:", json.dumps(server.stats()))
    s.sendall(os.urandom(8 << 20))
    s.shutdown(socket.SHUT_WR)
    expect_eof(s)  # the server sends nothing and closes after our end of stream
    s.close()
    after = server.wait_open(0)
    check(after["calls"].get("WSARecv", 0) - before["calls"].get("WSARecv", 0) >= 8 * 16,
          "too few receives for 8 MiB in 64 KiB buffers")
    server.quit()


def shutdown_under_load():
    # quit while connections are busy, with several workers: the server must still exit 0.
    server = Server("echo", 4)
    stop = threading.Event()

    def client():
        try:
            with server.connect() as c:
                while not stop.is_set():
                    c.sendall(b"x" * 1000)
                    recv_exactly(c, 1000)
        except (OSError, AssertionError):
            pass  # the server went away under us: expected
    clients = [threading.Thread(target=client) for _ in range(8)]
    for t in clients:
        t.start()
    time.sleep(1)
    idle = server.connect()  # one idle connection, its receive pending
    time.sleep(0.2)
    server.quit(command=None)  # end of input instead of "quit"
    stop.set()
    for t in clients:
        t.join()
    idle.close()


echo_test(1)
echo_test(4)
packet_test()
sink_test()
shutdown_under_load()
print("selftest: all passed")
EOF
