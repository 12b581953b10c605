#!/usr/bin/env python3
"""Attacks an example program under Wine the way a hostile peer on the network
would, and checks what the program did and printed:

    hostile-test.py PREFIX SCENARIO PROGRAM.exe [ARGS...]

PROGRAM runs under Wine (scripts/wine-run.sh PREFIX; PREFIX "native" runs a
Linux build itself) in a temporary directory;
the attacker is this script, on loopback. A server must print "listening on
HOST:PORT" first; a client gets "--port PORT" of a server played by this
script. The script prints what it did, the program's output (with its
control bytes shown as \\xNN, so that a failing run cannot garble the log),
and last a line starting with "verdict: ok" only if everything held. On a
failure it prints "hostile-test: FAILED (exit status 1)", which fails the
ctest test whatever else matched. Nothing is left running.

Scenarios are the functions named scenario_*, "-" for "_" (see --list).
"""

import hashlib
import os
import re
import selectors
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
    """A Windows program under Wine, its output going to a file. Its input is
    `stdin`, or with `hold_stdin` a pipe that stays open until type()."""

    def __init__(self, prefix, exe, args, cwd, stdin=b"", hold_stdin=False):
        self.name = os.path.basename(exe)
        self.path = os.path.join(cwd, self.name + ".out")
        self.status = None
        stdin_path = os.path.join(cwd, self.name + ".in")
        with open(stdin_path, "wb") as f:
            f.write(stdin)
        with open(self.path, "wb") as out, open(stdin_path, "rb") as given:
            self.proc = subprocess.Popen(
                ["bash", WINE_RUN, prefix, exe, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if hold_stdin else given,
                cwd=cwd,
            )

    def type(self, text: bytes):
        """Writes `text` to a held input, then closes it."""
        self.proc.stdin.write(text)
        self.proc.stdin.close()

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
    with selectors.DefaultSelector() as waiting:
        for i, s in enumerate(socks):
            waiting.register(s, selectors.EVENT_READ, i)
        while waiting.get_map() and time.monotonic() < end:
            for key, _ in waiting.select(max(0.0, end - time.monotonic())):
                try:
                    data = key.fileobj.recv(65536)
                except (ConnectionResetError, ConnectionAbortedError):
                    data = b""
                if not data:
                    lived[key.data] = time.monotonic() - started[key.data]
                    waiting.unregister(key.fileobj)
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
    the udp_broadcast listener: it prints each one escaped, on one line (and
    skips one too long for its buffer)."""
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
            for i, d in enumerate(datagrams):
                s.sendto(d, ("127.0.0.1", port))
                if i == 1:
                    s.sendto(b"\x1b[2J" * 200, ("127.0.0.1", port))  # over 512 bytes: skipped, not counted
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
    per 10 s and then says how many it did not show."""
    count = 300
    listener = Program(prefix, exe, ["listen", "--port", "0", "--count", str(count), *args], work)
    try:
        port = listener.port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(count):
                s.sendto(b"flood %d\n" % i, ("127.0.0.1", port))
                if i % 50 == 49:
                    time.sleep(0.05)  # pacing: loopback drops datagrams past the receive buffer
        try:
            status = listener.wait(20)
            complete = True
        except Failed:
            # Loopback dropped some after all (a loaded machine): stop it, and
            # judge what it received.
            listener.interrupt()
            status = listener.wait()
            complete = False
        check(status == 0, "the listener failed")
    finally:
        listener.kill()
        listener.report()
    out = listener.output()
    heard = len(re.findall(rb"^heard 'flood [0-9]+\\x0a' from ", out, re.M))
    not_shown = sum(int(n) for n in re.findall(rb"^\(([0-9]+) lines not shown: at most 50 per 10 s\)\r?$", out, re.M))
    check(heard <= 50 * 2, "%d 'heard' lines: more than the budget" % heard)
    check(not_shown > 0, "no count of the lines not shown")
    if complete:
        check(heard + not_shown == count, "%d shown + %d not shown != %d datagrams" % (heard, not_shown, count))
    else:
        check(heard + not_shown <= count, "%d shown + %d not shown > %d datagrams" % (heard, not_shown, count))
        print("(loopback dropped %d datagrams)" % (count - heard - not_shown))
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
    check(shown + not_shown == 2 * count,
          "%d lines shown + %d not shown for %d connections" % (shown, not_shown, count))
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


# file_server's protocol (examples/file_protocol.hpp).
FILE_HEADER, DATA, END, GET, READY, RESULT, CONTENT = 1, 2, 3, 4, 10, 11, 12
STORED, BAD_NAME, BUSY, STORAGE_ERROR, TOO_LARGE, NOT_FOUND = 0, 1, 2, 3, 7, 8
STATUS_NAMES = {0: "stored", 1: "bad_name", 2: "busy", 3: "storage_error", 4: "size_mismatch",
                5: "checksum_mismatch", 6: "protocol_error", 7: "too_large", 8: "not_found"}
RESULT_PREFIX = 1 + 8 + 32  # u8 status, u64 bytes, sha256


def sha256(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


class Uploader:
    """One connection to file_server, speaking its protocol."""

    def __init__(self, port):
        self.s = connect(port, timeout=30)

    def header(self, name: bytes, size: int):
        self.s.sendall(packet(FILE_HEADER, struct.pack("<Q", size) + name))

    def answer(self):
        """("ready", None) or ("result", (status, bytes, sha256, message))."""
        ptype, body = read_packet(self.s)
        if ptype == READY:
            return "ready", None
        check(ptype == RESULT and len(body) >= RESULT_PREFIX, "unexpected packet type %d" % ptype)
        code, n = struct.unpack("<BQ", body[:9])
        return "result", (code, n, body[9:RESULT_PREFIX], body[RESULT_PREFIX:])

    def ask(self, name: bytes, size: int):
        self.header(name, size)
        return self.answer()

    def send(self, content: bytes):
        for i in range(0, len(content), 60 * 1024):
            self.s.sendall(packet(DATA, content[i : i + 60 * 1024]))

    def finish(self, content: bytes):
        """Sends the end packet; returns the result."""
        self.s.sendall(packet(END, sha256(content)))
        kind, result = self.answer()
        check(kind == "result", "no result after the end packet")
        return result

    def upload(self, name: bytes, content: bytes):
        kind, refusal = self.ask(name, len(content))
        if kind != "ready":
            return refusal
        self.send(content)
        return self.finish(content)

    def close(self):
        self.s.close()


def expect_stored(result, content, what):
    code, n, digest, message = result
    check(code == STORED, "%s: %s (%r), not stored" % (what, STATUS_NAMES.get(code, code), message))
    check((n, digest) == (len(content), sha256(content)),
          "%s: the server reports %d bytes, sha256 %s for %d bytes, %s" % (what, n, digest.hex(), len(content),
                                                                         sha256(content).hex()))


def expect_refused(answer, code, text, what):
    text = text.encode() if isinstance(text, str) else text
    kind, result = answer
    check(kind == "result", "%s: the server said ready" % what)
    check(result[0] == code, "%s: %s (%r), not %s" % (what, STATUS_NAMES.get(result[0]), result[3], STATUS_NAMES[code]))
    check(text in result[3], "%s: the message %r does not say %r" % (what, result[3], text))


def store_listing(work):
    return sorted(os.listdir(os.path.join(work, "store")))


def content_of(work, name):
    with open(os.path.join(work, "store", name), "rb") as f:
        return f.read()


def random_bytes(n, seed):
    return bytes((seed * 7919 + i * 104729 + (i >> 8) * 31) & 0xFF for i in range(n))


def file_server(prefix, exe, args, work):
    os.makedirs(os.path.join(work, "store"), exist_ok=True)
    return start_server(prefix, exe, args, work)


def scenario_file_case(prefix, exe, args, work):
    """Uploads of names that differ only in case, ASCII and not
    ("Report.bin"/"report.bin", "Ärger.bin"/"ärger.bin"), on two
    connections with interleaved data: the file system says they are one
    file, so the second is refused as busy until the first is stored, and
    the file then holds one whole upload, never a mix."""
    pairs = [(b"Report.bin", b"report.bin"), ("\u00c4rger.bin".encode(), "\u00e4rger.bin".encode())]
    server = file_server(prefix, exe, args, work)
    try:
        port = server.port()
        for first, second in pairs:
            a, b = Uploader(port), Uploader(port)
            one, two = random_bytes(300 * 1024, 1), random_bytes(200 * 1024, 2)
            check(a.ask(first, len(one))[0] == "ready", "%r: not ready" % first)
            expect_refused(b.ask(second, len(two)), BUSY, "in progress", "%r while %r is received" % (second, first))
            a.send(one[: len(one) // 2])
            expect_refused(b.ask(second, len(two)), BUSY, "in progress", "%r, half of %r received" % (second, first))
            a.send(one[len(one) // 2 :])
            expect_stored(a.finish(one), one, first)
            listing = store_listing(work)
            check(len(listing) == 1 and content_of(work, listing[0]) == one,
                  "after %r the directory holds %r, not its content alone" % (first, listing))
            # Now free: the second upload replaces the first, whole.
            expect_stored(b.upload(second, two), two, second)
            listing = store_listing(work)
            check(len(listing) == 1 and content_of(work, listing[0]) == two,
                  "after %r the directory holds %r, not its content alone" % (second, listing))
            os.remove(os.path.join(work, "store", listing[0]))
            a.close()
            b.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    print("verdict: ok: %d case pairs, the second of each refused as busy, each file whole" % len(pairs))


def scenario_file_same_name(prefix, exe, args, work):
    """Four connections ask to upload the very same name at once: one is
    ready, three are refused as busy; the stored file is that one upload,
    and a retry after it replaces it whole."""
    server = file_server(prefix, exe, args, work)
    try:
        port = server.port()
        ups = [Uploader(port) for _ in range(4)]
        contents = [random_bytes(100 * 1024 + i, 10 + i) for i in range(4)]
        for u, c in zip(ups, contents):
            u.header(b"same.bin", len(c))
        answers = [u.answer() for u in ups]
        ready = [i for i, a in enumerate(answers) if a[0] == "ready"]
        check(len(ready) == 1, "%d of 4 were told ready" % len(ready))
        for i, a in enumerate(answers):
            if i not in ready:
                expect_refused(a, BUSY, "in progress", "upload %d" % i)
        winner = ready[0]
        ups[winner].send(contents[winner])
        expect_stored(ups[winner].finish(contents[winner]), contents[winner], "upload %d" % winner)
        check(store_listing(work) == ["same.bin"] and content_of(work, "same.bin") == contents[winner],
              "the directory holds %r, not upload %d whole" % (store_listing(work), winner))
        retry = (winner + 1) % 4
        expect_stored(ups[retry].upload(b"same.bin", contents[retry]), contents[retry], "the retry")
        check(store_listing(work) == ["same.bin"] and content_of(work, "same.bin") == contents[retry],
              "after the retry the directory holds %r, not the retry whole" % store_listing(work))
        for u in ups:
            u.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    print("verdict: ok: 4 simultaneous uploads of one name: 1 ready, 3 busy, the file whole")


def scenario_file_verify(prefix, exe, args, work):
    """The bytes on disk change under the server before the end packet (as a
    failing disk could; here a Linux process, which Wine's sharing rules do
    not stop, writes the file): the received bytes match the
    client's CRC-32 but the stored ones do not, so the server reads back,
    refuses with storage_error and leaves the older file as it was."""
    server = file_server(prefix, exe, args, work)
    try:
        port = server.port()
        with open(os.path.join(work, "store", "keep.bin"), "wb") as f:
            f.write(b"the older content\n")
        content = random_bytes(150 * 1024, 3)
        u = Uploader(port)
        check(u.ask(b"keep.bin", len(content))[0] == "ready", "not ready")
        u.send(content)
        part = os.path.join(work, "store", "keep.bin.part")
        end = time.monotonic() + 30
        while time.monotonic() < end and not (os.path.exists(part) and os.path.getsize(part) == len(content)):
            time.sleep(0.05)  # the server writes what it received; wait until all of it is there
        check(os.path.getsize(part) == len(content), "keep.bin.part never held the whole content")
        # Linux does not honour Wine's sharing modes: this script can write
        # the file the server holds.
        with open(part, "r+b") as f:
            f.seek(1000)
            f.write(bytes([content[1000] ^ 0xFF]))
        code, n, digest, message = u.finish(content)
        check(code == STORAGE_ERROR, "%s (%r), not storage_error" % (STATUS_NAMES.get(code), message))
        check(b"not what was received" in message, "the message %r" % message)
        check(store_listing(work) == ["keep.bin"], "the directory holds %r" % store_listing(work))
        check(content_of(work, "keep.bin") == b"the older content\n", "the older keep.bin was replaced")
        u.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    print("verdict: ok: a stored file that differs from what was received is refused; the older file stays")


def scenario_file_stale_part(prefix, exe, args, work):
    """A NAME.part left by a crash, open in no program, does not block NAME:
    the next upload takes it over, and what it held is not kept."""
    server = file_server(prefix, exe, args, work)
    try:
        with open(os.path.join(work, "store", "stale.bin.part"), "wb") as f:
            f.write(b"left over by a crash, longer than the new content\n")
        u = Uploader(server.port())
        expect_stored(u.upload(b"stale.bin", b"new"), b"new", "stale.bin")
        u.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    check(store_listing(work) == ["stale.bin"], "the directory holds %r" % store_listing(work))
    check(content_of(work, "stale.bin") == b"new", "stale.bin holds %r" % content_of(work, "stale.bin"))
    print("verdict: ok: a stale stale.bin.part was taken over; stale.bin holds the new upload alone")

def scenario_file_names(prefix, exe, args, work):
    """Windows device names the old filter missed (CONIN$, CONOUT$, COM and
    LPT with a superscript digit, COM0, a space before the extension) are
    refused; names that only look like them are stored."""
    refused = [b"CONIN$", b"conout$", b"CONIN$.txt", "COM\u00b9".encode(), "lpt\u00b2.txt".encode(),
               "Com\u00b3.log".encode(), b"COM0", b"lpt0.bin", b"nul .txt", b"con", b"Aux.c", b"LPT9"]
    accepted = [b"com10.txt", b"console.txt", b"conin.txt", "COM\u2074.txt".encode(), b"nul_.txt"]
    server = file_server(prefix, exe, args, work)
    try:
        u = Uploader(server.port())
        for name in refused:
            expect_refused(u.ask(name, 4), BAD_NAME, b"device name", repr(name))
        for name in accepted:
            expect_stored(u.upload(name, b"data"), b"data", repr(name))
        u.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    check(len(store_listing(work)) == len(accepted), "the directory holds %r" % store_listing(work))
    print("verdict: ok: %d device names refused, %d look-alikes stored" % (len(refused), len(accepted)))


def scenario_file_too_large(prefix, exe, args, work):
    """Sizes above --max-size (2^64-1 among them) are refused at once with
    too_large and a message that says so; a file of exactly the maximum is
    stored."""
    limit = int(option(args, "--max-size"))
    server = file_server(prefix, exe, args, work)
    try:
        u = Uploader(server.port())
        for size in (2**64 - 1, 2**63, limit + 1):
            expect_refused(u.ask(b"big.bin", size), TOO_LARGE, b"too large", "size %d" % size)
        content = random_bytes(limit, 4)
        expect_stored(u.upload(b"big.bin", content), content, "size %d" % limit)
        u.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    check(store_listing(work) == ["big.bin"], "the directory holds %r" % store_listing(work))
    print("verdict: ok: 3 sizes above %d refused as too large, %d bytes stored" % (limit, limit))


def scenario_file_in_use(prefix, exe, args, work):
    """The file is open in another program on the server (here file_client,
    uploading it from the server's own directory, holds it open): the
    upload is refused as busy and the file stays as it was."""
    client = option(args, "--client")
    server_args = [a for i, a in enumerate(args) if a != "--client" and (i == 0 or args[i - 1] != "--client")]
    server = file_server(prefix, exe, server_args, work)
    try:
        with open(os.path.join(work, "store", "open.bin"), "wb") as f:
            f.write(b"open in another program\n")
        uploader = Program(prefix, client, ["--port", str(server.port()), "store/open.bin"], work)
        try:
            uploader.wait()
        finally:
            uploader.kill()
            uploader.report()
        check(uploader.status == 1, "file_client exited with %s, not 1" % uploader.status)
        check(b"the server refused open.bin: the file is in use on the server" in uploader.output(),
              "file_client did not hear that the file is in use")
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    check(store_listing(work) == ["open.bin"], "the directory holds %r" % store_listing(work))
    check(content_of(work, "open.bin") == b"open in another program\n", "open.bin changed")
    print("verdict: ok: a file open in another program is refused as busy and stays as it was")


def scenario_file_download(prefix, exe, args, work):
    """Downloads, as a client that checks every byte: the content packet
    announces the size and SHA-256 of exactly what follows it; names that
    would leave --dir, device names and missing files are refused; while a
    download waits for a client that does not read, the server holds the
    file, so an upload of that name is refused as busy, and the download
    then arrives whole, with the connection in step for the next request."""
    store = os.path.join(work, "store")
    os.makedirs(store, exist_ok=True)
    big = os.urandom(64 * 1024 * 1024)  # far more than both sockets' buffers hold
    with open(os.path.join(store, "big.bin"), "wb") as f:
        f.write(big)
    server = file_server(prefix, exe, args, work)
    try:
        port = server.port()
        for name, code in [(b"../big.bin", BAD_NAME), (b"con.bin", BAD_NAME), (b"missing.bin", NOT_FOUND)]:
            s = connect(port, timeout=30)
            s.sendall(packet(GET, name))
            ptype, body = read_packet(s)
            check(ptype == RESULT and len(body) >= RESULT_PREFIX and body[0] == code,
                  "get %r: type %d, status %s, not %s" % (name, ptype, STATUS_NAMES.get(body[0] if body else None),
                                                         STATUS_NAMES[code]))
            s.close()
        d = connect(port, timeout=30)
        d.sendall(packet(GET, b"big.bin"))
        ptype, body = read_packet(d)
        check(ptype == CONTENT and len(body) == 40, "the answer to get big.bin: type %d, %d bytes" % (ptype, len(body)))
        size = struct.unpack("<Q", body[:8])[0]
        check(size == len(big), "announced %d bytes, the file has %d" % (size, len(big)))
        check(body[8:] == sha256(big), "announced sha256 %s, the file's is %s" % (body[8:].hex(), sha256(big).hex()))
        u = Uploader(port)
        expect_refused(u.ask(b"big.bin", 10), BUSY, "in use", "an upload while big.bin is being downloaded")
        u.close()
        got = recv_exactly(d, size)
        check(got == big, "the downloaded bytes differ from the file")
        d.sendall(packet(GET, b"missing.bin"))
        ptype, body = read_packet(d)
        check(ptype == RESULT and body[0] == NOT_FOUND, "the connection is out of step after the download")
        d.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    check(store_listing(work) == ["big.bin"], "the directory holds %r" % store_listing(work))
    print("verdict: ok: 3 bad requests refused, 64 MiB downloaded whole, an upload of it refused meanwhile")


def scenario_file_escape(prefix, exe, args, work):
    """Names full of terminal escapes, newlines and control bytes are refused
    and printed escaped; a name with non-ASCII characters (a right-to-left
    override among them) is stored and printed escaped, all on one line each."""
    hostile = [b"\x1b[2J\x1b]0;owned\x07.bin", b"a\nb.bin", b"c\rd.bin"]
    not_utf8 = b"\x9b31m.bin"  # a lone byte 0x9b, the 8-bit CSI
    # Valid UTF-8, no ASCII control: stored. U+009B (the CSI again) and a
    # right-to-left override, which would show "exe.png" as "png.exe".
    accepted = ["\u009b31m.bin".encode(), "\u00c4rger\u202egnp.exe".encode()]
    server = file_server(prefix, exe, args, work)
    try:
        u = Uploader(server.port())
        for name in hostile:
            expect_refused(u.ask(name, 1), BAD_NAME, "control character", repr(name))
        expect_refused(u.ask(not_utf8, 1), BAD_NAME, "not valid UTF-8", repr(not_utf8))
        for name in accepted:
            expect_stored(u.upload(name, b"y"), b"y", repr(name))
        u.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    out = server.output()
    check(not raw_control_bytes(out), "raw control bytes in the output at %s" % raw_control_bytes(out)[:10])
    reasons = [(n, "the name contains a control character") for n in hostile]
    reasons.append((not_utf8, "the name is not valid UTF-8"))
    for name, why in reasons:
        line = 'refused "%s": %s' % (escaped(name), why)
        check(line.encode() in out, "no line %r" % line)
    for name in accepted:
        check(("receiving %s, " % escaped(name)).encode() in out, "no receiving line for %r" % name)
    print("verdict: ok: hostile names printed escaped, one line each")


def scenario_file_request(prefix, exe, args, work):
    """A client that uploads a file and then asks for nothing more: the
    connection is closed within the request deadline (--request-timeout)
    of the result."""
    deadline = float(option(args, "--request-timeout"))
    server = file_server(prefix, exe, args, work)
    try:
        u = Uploader(server.port())
        expect_stored(u.upload(b"one.bin", b"one"), b"one", "one.bin")
        lived = wait_all_closed([u.s], [time.monotonic()], deadline + SLACK)
        u.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    what = check_lifetimes(lived, deadline, "idle connections")
    print("verdict: ok: %s after the result" % what)


def scenario_file_stall(prefix, exe, args, work):
    """An upload that stops sending half way: the connection is closed
    within the stall deadline (--stall-timeout) of the last data, and
    NAME.part is gone."""
    deadline = float(option(args, "--stall-timeout"))
    server = file_server(prefix, exe, args, work)
    try:
        u = Uploader(server.port())
        check(u.ask(b"slow.bin", 1000)[0] == "ready", "not ready")
        u.send(b"hello")
        lived = wait_all_closed([u.s], [time.monotonic()], deadline + SLACK)
        u.close()
        check(server.wait() == 0, "the server failed")
    finally:
        server.kill()
        server.report()
    what = check_lifetimes(lived, deadline, "stalled uploads")
    check(store_listing(work) == [], "the directory holds %r" % store_listing(work))
    print("verdict: ok: %s, no slow.bin.part left" % what)


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
        result = struct.pack("<BQ", 1, 0) + bytes(32) + HOSTILE_TEXT
        conn.sendall(packet(11, result))
        closed_by_peer(conn, 30)

    client = run_client_against(prefix, exe, [*args, "a.bin"], work, server)
    out = client.output()
    check(not raw_control_bytes(out), "raw control bytes in the output")
    expected = "the server refused a.bin: " + escaped(HOSTILE_TEXT)
    check(expected.encode() in out, "no line %r" % expected)
    print("verdict: ok: file_client printed the hostile refusal escaped")


CHAT_JOIN, CHAT_WELCOME = 1, 10


def scenario_chat_zombie(prefix, exe, args, work):
    """A chat member that vanished without a FIN or a reset (here: it joined,
    then never reads or answers, its socket left open) is dropped by the
    server's heartbeat; a real chat_client, idle in the same room for longer,
    answers the pings and stays until it leaves."""
    client_exe = option(args, "--client")
    server_args = [a for i, a in enumerate(args) if a != "--client" and (i == 0 or args[i - 1] != "--client")]
    interval = float(option(server_args, "--heartbeat"))
    timeout = float(option(server_args, "--heartbeat-timeout"))
    server = start_server(prefix, exe, server_args, work)
    client = None
    zombie = None
    try:
        port = server.port()
        client = Program(prefix, client_exe, ["--port", str(port), "--name", "alice"], work, hold_stdin=True)
        client.wait_for(rb"\* 0 others in the room")
        alice_in = time.monotonic()
        zombie = connect(port)
        zombie.sendall(packet(CHAT_JOIN, b"zombie"))
        joined = time.monotonic()
        kind, body = read_packet(zombie)
        check(kind == CHAT_WELCOME and body == b"1", "the zombie was welcomed with %r" % ((kind, body),))
        # From here on it says nothing and reads nothing; its socket stays open.
        server.wait_for(rb"zombie left \(peer did not answer the heartbeat in time\)", timeout + interval + SLACK)
        gone_after = time.monotonic() - joined
        check(gone_after >= timeout - EARLY, "the zombie was dropped after %.2f s, before the %g s timeout" %
              (gone_after, timeout))
        time.sleep(2 * interval)  # alice is watched for two more intervals
        check(b"alice left" not in server.output(), "alice was dropped too")
        alice_idle = time.monotonic() - alice_in
        check(alice_idle > timeout, "alice was idle only %.2f s" % alice_idle)
        client.wait_for(rb"\* zombie left")
        client.type(b"EXIT\n")
        check(client.wait() == 0, "chat_client failed")
        check(server.wait() == 0, "the server failed")
    finally:
        if zombie is not None:
            zombie.close()
        if client is not None:
            client.kill()
            client.report()
        server.kill()
        server.report()
    out = server.output()
    check(b"alice left (closed)" in out, "alice did not leave on her own")
    check(b"1 of them dropped for not answering the heartbeat" in out, "no summary of the zombie")
    print("verdict: ok: the zombie was dropped by the heartbeat %.2f s after its last packet (timeout %g s, "
          "interval %g s); alice, idle for %.2f s, answered the pings and stayed" %
          (gone_after, timeout, interval, alice_idle))


SCENARIOS = {
    name[len("scenario_") :].replace("_", "-"): f
    for name, f in sorted(globals().items())
    if name.startswith("scenario_")
}


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        for name, f in SCENARIOS.items():
            print("%-28s %s" % (name, f.__doc__.split("\n")[0]))
        return 0
    if len(sys.argv) < 4 or sys.argv[2] not in SCENARIOS:
        print("usage: hostile-test.py PREFIX SCENARIO PROGRAM.exe [ARGS...]  (--list: the scenarios)", file=sys.stderr)
        return 2
    # "native" is not a path: scripts/wine-run.sh runs the program itself.
    prefix = sys.argv[1] if sys.argv[1] == "native" else os.path.abspath(sys.argv[1])
    scenario, exe, args = sys.argv[2], sys.argv[3], sys.argv[4:]
    with tempfile.TemporaryDirectory() as work:
        try:
            SCENARIOS[scenario](prefix, exe, args, work)
        except Exception as e:  # any failure, the script's own included, must fail the test
            print("verdict: FAILED: %s" % (e if isinstance(e, Failed) else "%s: %s" % (type(e).__name__, e)))
            # ctest reads this line: a test that matches output ignores exit codes.
            print("hostile-test: FAILED (exit status 1)")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
