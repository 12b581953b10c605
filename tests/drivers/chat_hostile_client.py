#!/usr/bin/env python3
"""Hostile and careless clients against chat_server (run by chat-hostile-test.sh).

    chat_hostile_client.py PORT JOIN_TIMEOUT

Each check prints "ok: ..." or "FAILED: ..."; the exit status is the number of
failures. The server must run with --join-timeout JOIN_TIMEOUT.
"""
import socket
import struct
import sys
import time

JOIN, SAY, WELCOME, MESSAGE, REFUSED = 1, 2, 10, 13, 15
port = int(sys.argv[1])
join_timeout = float(sys.argv[2])
failures = 0


def check(ok, what):
    global failures
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if not ok:
        failures += 1


def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return s


def packet(kind, body):
    return struct.pack("<HH", 4 + len(body), kind) + body


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_packet(s):
    """(type, body), or None at end of stream."""
    try:
        header = read_exact(s, 4)
        if header is None:
            return None
        size, kind = struct.unpack("<HH", header)
        body = read_exact(s, size - 4)
        return None if body is None else (kind, body)
    except ConnectionResetError:
        return None


def closed_by_server(s):
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


# A connection that never joins is dropped after the join deadline.
s = connect()
started = time.monotonic()
closed = closed_by_server(s)
elapsed = time.monotonic() - started
check(closed and join_timeout * 0.9 <= elapsed <= join_timeout + 15,
      f"a silent connection was closed after {elapsed:.1f} s (join deadline {join_timeout:g} s)")
s.close()

# Nicknames the server refuses, each with the reason, then the connection ends.
for name, why in [(b"n" * 33, b"1 to 32 bytes"), (b"", b"1 to 32 bytes"),
                  (b"\x1b[31mevil\nforged: log line", b"control characters"),
                  (b"c1\xc2\x9bcontrol", b"control characters")]:
    s = connect()
    s.sendall(packet(JOIN, name))
    answer = read_packet(s)
    check(answer is not None and answer[0] == REFUSED and why in answer[1],
          f"nickname {name[:12]!r}... refused with a reason: {answer!r}")
    check(closed_by_server(s), "and the connection closed")
    s.close()

# A member's refused lines are answered, and the member stays.
s = connect()
s.sendall(packet(JOIN, b"mallory"))
answer = read_packet(s)
check(answer is not None and answer[0] == WELCOME, f"a good nickname is welcome: {answer!r}")
s.sendall(packet(SAY, b"x" * 1001))
answer = read_packet(s)
check(answer is not None and answer[0] == REFUSED and b"1000" in answer[1], f"a long line is refused: {answer!r}")
s.sendall(packet(SAY, b"hi\x1b[2J\r\nforged"))
answer = read_packet(s)
check(answer is not None and answer[0] == REFUSED and b"control" in answer[1],
      f"a line with escapes is refused: {answer!r}")
s.sendall(packet(SAY, b"x" * 1000))
answer = read_packet(s)
check(answer is not None and answer[0] == MESSAGE and answer[1] == b"mallory: " + b"x" * 1000,
      "a line of exactly 1000 bytes goes to the room")
s.sendall(packet(SAY, "안녕하세요".encode()))
answer = read_packet(s)
check(answer is not None and answer[0] == MESSAGE and answer[1] == "mallory: 안녕하세요".encode(),
      "UTF-8 text goes to the room")
s.close()

sys.exit(failures)
