#!/usr/bin/env python3
"""Attacks an example program under Wine the way a hostile peer on the network
would, and checks what the program did and printed:

    hostile-test.py PREFIX SCENARIO PROGRAM.exe [ARGS...]

PROGRAM runs under Wine (scripts/wine-run.sh PREFIX) in a temporary directory;
the attacker is this script, on loopback. A server must print "listening on
HOST:PORT" first; a client gets "--port PORT" of a server played by this
script. The script prints what it did, the program's output (with its
control bytes shown as \\xNN, so that a failing run cannot garble the log),
and last a line starting with "verdict: ok" only if everything held. On a
failure it prints "hostile-test: FAILED (exit status 1)", which fails the
ctest test whatever else matched. Nothing is left running.

Scenarios are the functions named scenario_*, "-" for "_" (see --list).
"""

import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WINE_RUN = os.path.join(HERE, "..", "..", "scripts", "wine-run.sh")


class Failed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failed(what)


def shown(data: bytes) -> str:
    """Bytes as text for this script's own output: control bytes and bytes
    above 0x7E as \\xNN, line ends kept."""
    out = []
    for b in data.replace(b"\r\n", b"\n"):
        if b == 0x0A or 0x20 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def escaped(data: bytes, limit: int = 200) -> str:
    """What examples/untrusted_text.hpp's escaped() must print for `data`:
    written again here, from its specification, as the test's oracle."""
    out = []
    for b in data[:limit]:
        if b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out) + ("..." if len(data) > limit else "")


def raw_control_bytes(output: bytes) -> list:
    """Offsets of the bytes in `output` that escaping must have removed:
    anything but printable ASCII and line ends (Wine writes "\\r\\n")."""
    text = output.replace(b"\r\n", b"\n")
    return [i for i, b in enumerate(text) if not (b == 0x0A or 0x20 <= b <= 0x7E)]


class Program:
    """A Windows program under Wine, its output going to a file."""

    def __init__(self, prefix, exe, args, cwd, stdin=b""):
        self.name = os.path.basename(exe)
        self.path = os.path.join(cwd, self.name + ".out")
        self.status = None
        stdin_path = os.path.join(cwd, self.name + ".in")
        with open(stdin_path, "wb") as f:
            f.write(stdin)
        with open(self.path, "wb") as out, open(stdin_path, "rb") as given:
            self.proc = subprocess.Popen(
                ["bash", WINE_RUN, prefix, exe, *args], stdout=out, stderr=subprocess.STDOUT, stdin=given, cwd=cwd
            )

    def output(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def wait_for(self, pattern: bytes, timeout=60.0):
        """Waits until the output matches `pattern` (a regular expression)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self.output())
            if m:
                return m
            if self.proc.poll() is not None:
                m = re.search(pattern, self.output())
                if m:
                    return m
                break
            time.sleep(0.05)  # polling a file another process writes
        raise Failed("%s never printed %r" % (self.name, pattern))

    def port(self) -> int:
        m = self.wait_for(rb"^listening on [^\r\n]*:([0-9]+)\r?\n")
        return int(m.group(1))

    def wait(self, timeout=60.0) -> int:
        try:
            self.status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failed("%s did not exit within %g s" % (self.name, timeout))
        return self.status

    def interrupt(self):
        """Ctrl+C: wine-run.sh execs Wine, so the signal reaches the program."""
        self.proc.send_signal(signal.SIGINT)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def report(self):
        status = "running" if self.status is None else self.status
        print("--- %s output (exit %s)" % (self.name, status))
        sys.stdout.write(shown(self.output()))
        sys.stdout.flush()


def connect(port, timeout=10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def closed_by_peer(s: socket.socket, within: float):
    """Waits up to `within` seconds for the peer to close `s`, dropping what it
    sends. Returns the seconds it took, or None if it did not close."""
    start = time.monotonic()
    end = start + within
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, ConnectionAbortedError):
            return time.monotonic() - start
        if not data:
            return time.monotonic() - start


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise Failed("the connection ended after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


# Packets of portico's default format: u16 size counting the 4-byte header,
# u16 type, little-endian.
def packet(ptype: int, body: bytes) -> bytes:
    return struct.pack("<HH", len(body) + 4, ptype) + body


def read_packet(s: socket.socket):
    size, ptype = struct.unpack("<HH", recv_exactly(s, 4))
    return ptype, recv_exactly(s, size - 4)


def option(args, name, fallback=None):
    """The word after `name` in `args`."""
    for i, a in enumerate(args[:-1]):
        if a == name:
            return args[i + 1]
    return fallback


def start_server(prefix, exe, args, work) -> Program:
    server = Program(prefix, exe, args, work)
    try:
        server.port()
    except Failed:
        server.kill()
        server.report()
        raise
    return server


def wait_all_closed(socks, started, within):
    """Waits until the peer closed every socket in `socks` (started[i]: when
    socks[i] connected), for at most `within` seconds from now. Returns how
    long each lived, None for those still open."""
    lived = [None] * len(socks)
    end = time.monotonic() + within
    while any(t is None for t in lived) and time.monotonic() < end:
        waiting = [i for i, t in enumerate(lived) if t is None]
        readable, _, _ = select.select([socks[i] for i in waiting], [], [], max(0.0, end - time.monotonic()))
        for s in readable:
            i = socks.index(s)
            try:
                data = s.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError):
                data = b""
            if not data:
                lived[i] = time.monotonic() - started[i]
    return lived


# How late a deadline may close a connection: Wine on a loaded two-core
# machine, with other tests running.
SLACK = 5.0
# How early: the server's clock starts at its accept, after our connect.
EARLY = 0.1


def check_lifetimes(lived, deadline, what):
    check(all(t is not None for t in lived), "%d of %d %s still open %g s after the deadline" %
          (sum(t is None for t in lived), len(lived), what, SLACK))
    check(min(lived) >= deadline - EARLY, "a %s was closed after %.2f s, before its %g s deadline" %
          (what[:-1], min(lived), deadline))
    return "%d %s closed by the server after %.2f to %.2f s (deadline %g s)" % (
        len(lived), what, min(lived), max(lived), deadline)


# ---------------------------------------------------------------- scenarios


def scenario_udp_escape(prefix, exe, args, work):
    """Datagrams full of terminal escapes, newlines and control bytes reach
    the udp_broadcast listener: it prints each one escaped, on one line."""
    datagrams = [
        b"\x1b[31mred\x1b[0m\x1b]0;retitled\x07",
        b"two\nheard 'forged' from 10.0.0.1:25000",
        b"\r\x00\x07\x08\x7f\\x41\t",
        "\u00c4rger".encode() + b"A" * 300,
    ]
    listener = Program(prefix, exe, ["listen", "--port", "0", "--count", str(len(datagrams)), *args], work)
    try:
        port = listener.port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:
                s.sendto(d, ("127.0.0.1", port))
        check(listener.wait() == 0, "the listener failed")
    finally:
        listener.kill()
        listener.report()
    out = listener.output()
    check(not raw_control_bytes(out), "raw control bytes in the output at %s" % raw_control_bytes(out)[:10])
    heard = re.findall(rb"^heard '(.*)' from 127\.0\.0\.1:[0-9]+\r?$", out, re.M)
    check(len(heard) == len(datagrams), "%d 'heard' lines for %d datagrams" % (len(heard), len(datagrams)))
    for got, sent in zip(heard, datagrams):
        check(got.decode() == escaped(sent), "%r printed as %r, not %r" % (sent, got, escaped(sent)))
    lines = out.replace(b"\r\n", b"\n").count(b"\n")
    check(lines == 1 + len(datagrams), "%d lines printed, not %d" % (lines, 1 + len(datagrams)))
    print("verdict: ok: %d hostile datagrams, each printed escaped on one line" % len(datagrams))


def scenario_udp_flood(prefix, exe, args, work):
    """300 datagrams at once: the listener prints at most 50 'heard' lines
    and then says how many it did not show."""
    count = 300
    listener = Program(prefix, exe, ["listen", "--port", "0", "--count", str(count), *args], work)
    try:
        port = listener.port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            for i in range(count):
                s.sendto(b"flood %d\n" % i, ("127.0.0.1", port))
                if i % 50 == 49:
                    time.sleep(0.05)  # pacing: loopback drops datagrams past the receive buffer
        check(listener.wait() == 0, "the listener failed (did loopback drop a datagram?)")
    finally:
        listener.kill()
        listener.report()
    out = listener.output()
    heard = len(re.findall(rb"^heard 'flood [0-9]+\\x0a' from ", out, re.M))
    not_shown = sum(int(n) for n in re.findall(rb"^\(([0-9]+) lines not shown: at most 50 per 10 s\)\r?$", out, re.M))
    check(heard <= 50 * 2, "%d 'heard' lines: more than the budget" % heard)
    check(heard + not_shown == count, "%d shown + %d not shown != %d datagrams" % (heard, not_shown, count))
    print("verdict: ok: %d datagrams, %d lines shown, %d counted as not shown" % (count, heard, not_shown))


def run_client_against(prefix, exe, args, work, server, stdin=b""):
    """Runs the client against a server played by `server(conn)`, this
    script, on one connection."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        client = Program(prefix, exe, ["--port", str(ls.getsockname()[1]), *args], work, stdin)
        try:
            ls.settimeout(60)
            conn, _ = ls.accept()
            with conn:
                conn.settimeout(30)
                server(conn)
            client.wait()
        finally:
            client.kill()
            client.report()
    return client


def per_connection_lines(out: bytes):
    """The lines about connections (they start with the peer's endpoint),
    and the count of those the server's log budget left out."""
    shown = len(re.findall(rb"^127\.0\.0\.1:[0-9]+: ", out, re.M))
    not_shown = sum(int(n) for n in re.findall(rb"^\(([0-9]+) lines not shown: at most 50 per 10 s\)\r?$", out, re.M))
    return shown, not_shown


def scenario_silent(prefix, exe, args, work):
    """Connections that never send a byte (as many as --sessions): the server
    closes each within its join deadline (--join-timeout, or file_server's
    --request-timeout), says why, and counts them."""
    deadline = float(option(args, "--join-timeout") or option(args, "--request-timeout"))
    count = int(option(args, "--sessions"))
    server = start_server(prefix, exe, args, work)
    try:
        port = server.port()
        socks, started = [], []
        for _ in range(count):
            socks.append(connect(port))
            started.append(time.monotonic())
        lived = wait_all_closed(socks, started, deadline + SLACK)
        for s in socks:
            s.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    what = check_lifetimes(lived, deadline, "silent connections")
    out = server.output()
    check(re.search(rb"^%d connections closed by a deadline\r?$" % count, out, re.M), "no count of the dropped")
    shown, not_shown = per_connection_lines(out)
    # Each connection causes two lines: connected, closed.
    check(shown + not_shown == 2 * count, "%d lines shown + %d not shown for %d connections" % (shown, not_shown, count))
    check(shown <= 50 * (1 + int(max(lived) // 10) + 1), "%d lines about connections: over the log budget" % shown)
    print("verdict: ok: %s; %d lines about them shown, %d counted as not shown" % (what, shown, not_shown))


def scenario_idle(prefix, exe, args, work):
    """A client that talks once and then falls silent: the server closes the
    connection within its idle deadline (--idle-timeout) of the last bytes.
    The hello is raw bytes for echo_server, a packet for packet_echo_server
    (PROGRAM's name says which)."""
    deadline = float(option(args, "--idle-timeout"))
    framed = "packet" in os.path.basename(exe)
    hello = packet(1, b"hello") if framed else b"hello"
    server = start_server(prefix, exe, args, work)
    try:
        s = connect(server.port())
        s.sendall(hello)
        echo = recv_exactly(s, len(hello))
        check(echo == hello, "the echo was %r" % echo)
        lived = wait_all_closed([s], [time.monotonic()], deadline + SLACK)
        s.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    what = check_lifetimes(lived, deadline, "idle connections")
    check(re.search(rb"^1 connections closed by a deadline\r?$", server.output(), re.M), "no count of the dropped")
    print("verdict: ok: %s after the echo" % what)


HOSTILE_TEXT = b"\x1b[2J\x1b]0;owned\x07\nforged line\r"


def scenario_echo_client_escape(prefix, exe, args, work):
    """A server that answers a typed line with escape sequences: echo_client
    prints them escaped (and fails: the echo differs)."""

    def server(conn):
        line = recv_exactly(conn, len(b"hello\n"))
        check(line == b"hello\n", "the client sent %r" % line)
        conn.sendall(HOSTILE_TEXT[: len(line)])
        conn.shutdown(socket.SHUT_WR)
        closed_by_peer(conn, 30)

    client = run_client_against(prefix, exe, args, work, server, stdin=b"hello\nEXIT\n")
    out = client.output()
    check(not raw_control_bytes(out), "raw control bytes in the output")
    expected = "from server: " + escaped(HOSTILE_TEXT[:6])
    check(expected.encode() in out, "no line %r" % expected)
    print("verdict: ok: echo_client printed the hostile echo escaped")


def scenario_packet_echo_client_escape(prefix, exe, args, work):
    """A server that answers with a packet full of escape sequences:
    packet_echo_client prints it escaped."""

    def server(conn):
        ptype, body = read_packet(conn)
        check(ptype == 1 and body == b"hello", "the client sent %r" % body)
        conn.sendall(packet(1, HOSTILE_TEXT))
        conn.shutdown(socket.SHUT_WR)
        closed_by_peer(conn, 30)

    client = run_client_against(prefix, exe, args, work, server, stdin=b"hello\nEXIT\n")
    out = client.output()
    check(not raw_control_bytes(out), "raw control bytes in the output")
    expected = "from server [type 1]: " + escaped(HOSTILE_TEXT)
    check(expected.encode() in out, "no line %r" % expected)
    print("verdict: ok: packet_echo_client printed the hostile packet escaped")


def scenario_file_client_escape(prefix, exe, args, work):
    """A server that refuses an upload with a message full of escape
    sequences: file_client prints it escaped."""
    with open(os.path.join(work, "a.bin"), "wb") as f:
        f.write(b"content")

    def server(conn):
        ptype, body = read_packet(conn)
        check(ptype == 1 and body[8:] == b"a.bin", "the client sent %r" % body)
        result = struct.pack("<BQI", 1, 0, 0) + HOSTILE_TEXT
        conn.sendall(packet(11, result))
        closed_by_peer(conn, 30)

    client = run_client_against(prefix, exe, [*args, "a.bin"], work, server)
    out = client.output()
    check(not raw_control_bytes(out), "raw control bytes in the output")
    expected = "the server refused a.bin: " + escaped(HOSTILE_TEXT)
    check(expected.encode() in out, "no line %r" % expected)
    print("verdict: ok: file_client printed the hostile refusal escaped")


SCENARIOS = {
    name[len("scenario_") :].replace("_", "-"): f for name, f in sorted(globals().items()) if name.startswith("scenario_")
}


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        for name, f in SCENARIOS.items():
            print("%-28s %s" % (name, f.__doc__.split("\n")[0]))
        return 0
    if len(sys.argv) < 4 or sys.argv[2] not in SCENARIOS:
        print("usage: hostile-test.py PREFIX SCENARIO PROGRAM.exe [ARGS...]  (--list: the scenarios)", file=sys.stderr)
        return 2
    prefix, scenario, exe, args = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    with tempfile.TemporaryDirectory() as work:
        try:
            SCENARIOS[scenario](prefix, exe, args, work)
        except (Failed, OSError) as e:
            print("verdict: FAILED: %s" % e)
            # ctest reads this line: a test that matches output ignores exit codes.
            print("hostile-test: FAILED (exit status 1)")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
