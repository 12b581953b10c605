#!/usr/bin/env python3
"""Resident memory of an example server under Wine through cycles of idle
connections (docs/design/memory.md): N connections, one exchange on each (an
echoed packet for packet_echo_server, a join and its welcome for chat_server),
all idle, then all closed; repeated. Prints VmRSS of the server's process at
each step. A measurement, not a test: it asserts nothing.

    idle-memory.py SERVER.exe WINE-PREFIX CONNECTIONS CYCLES PORT

The server is started with --sessions CONNECTIONS*CYCLES, so it ends by itself
after the last cycle. Stop the prefix's wineserver afterwards
(tests/drivers/wine-server.sh stop PREFIX).
"""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("PPid:"):
                        children.setdefault(int(line.split()[1]), []).append(int(entry))
        except OSError:
            pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def resident_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return -1


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise SystemExit("the server closed a connection")
        data += chunk
    return data


def server_side_open(port):
    """Connections the server has not closed yet: sockets on its port that
    are established or that the peer closed (CLOSE_WAIT). Its log cannot tell:
    the examples limit how many lines they print per 10 s."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == port and fields[3] in ("01", "08"):
                        count += 1
        except OSError:
            pass
    return count


def wait_until(done, seconds):
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main():
    exe, prefix, n, cycles, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    chat = "chat_server" in os.path.basename(exe)
    server = subprocess.Popen(
        ["bash", f"{ROOT}/scripts/wine-run.sh", prefix, exe, "--port", str(port), "--sessions", str(n * cycles)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    listening = threading.Event()

    def follow_output():
        for line in server.stdout:
            if line.startswith("listening"):
                listening.set()

    threading.Thread(target=follow_output, daemon=True).start()
    if not listening.wait(120):
        raise SystemExit("the server did not start")
    name = os.path.basename(exe).encode()
    pid = next(p for p in descendants(server.pid)
               if name in open(f"/proc/{p}/cmdline", "rb").read() and open(f"/proc/{p}/comm").read().strip() != "bash")
    print(f"start: {resident_mb(pid)} MB resident", flush=True)
    body = b"x" * 24
    echo_packet = struct.pack("<HH", 4 + len(body), 7) + body
    for cycle in range(cycles):
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        for i, s in enumerate(connections):
            if chat:
                nickname = f"user{cycle}_{i}".encode()
                s.sendall(struct.pack("<HH", 4 + len(nickname), 1) + nickname)  # join
            else:
                s.sendall(echo_packet)
        for s in connections:
            if chat:
                kind = 0
                while kind != 10:  # welcome; "joined" notices may come first
                    size, kind = struct.unpack("<HH", read_exact(s, 4))
                    read_exact(s, size - 4)
            else:
                read_exact(s, len(echo_packet))
        print(f"cycle {cycle}: {n} connections idle: {resident_mb(pid)} MB resident", flush=True)
        for s in connections:
            s.close()
        if not wait_until(lambda: server_side_open(port) == 0, 600):
            raise SystemExit(f"the server still holds {server_side_open(port)} connections")
        print(f"cycle {cycle}: all closed: {resident_mb(pid)} MB resident", flush=True)
    server.wait(120)


if __name__ == "__main__":
    main()
