#!/usr/bin/env python3
"""The server benchmark runner: portico against standalone Asio, with a
hand-written IOCP server as the floor (bench/PROTOCOL.md).

For each scenario it starts the three servers under Wine pinned to one core
(with the wineserver), drives them with the native load client pinned to the
other core, and runs rounds of trials. Within a round portico and Asio run
back to back, in the order portico, Asio in even rounds and Asio, portico in
odd ones (ABBA), so drift in the machine's speed (other tenants, thermal
state) falls on both alike; the floor runs in every other round. Each round
gives one portico/Asio ratio; the report gives the median ratio with a
bootstrap 95% interval, next to both absolute medians. Equal means the
interval contains 1.

Beside the timings, counted metrics from each server's stats line: Win32
calls, completions per dequeue and heap allocations per message, measured
inside the trial's steady window; and per idle connection, the server's heap
bytes and allocations and the resident sets (/proc) of the server's Wine
process and of the wineserver, each idle trial on fresh processes.

The fan-out scenarios (one sender, many receivers) run portico and Asio only:
the floor has no fan-out. Their messages are deliveries, their times one way.

Scenarios at scale: 1,000 ping-pong connections, and 100 among 9,900 idle
ones. Their connections are all open before the warm-up starts (the client
says when on stderr). 10,000 connections need 10,000 descriptors in the
wineserver, which keeps the soft limit it was started with: this runner
raises its own soft RLIMIT_NOFILE to the hard limit before starting it
(bench/PROTOCOL.md, "Many connections").

The download scenarios (portico and Asio only) serve one file, written by the
load client (--write-file) into the build directory: portico sends it with
tcp_socket::transmit_file, Asio reads it with asio::random_access_file and
writes it to the socket. Their messages are files. The download probe runs a
64-byte ping-pong connection against the download server alone, then beside
downloads, and reports how much its p99 grows: a server thread that waited for
the disk would show there.

Native (--native, scripts/bench.sh --native): the same scenarios, client and
JSON against the Linux servers of preset linux-bench, run directly (no Wine),
pinned the same way: portico over io_uring, Asio over epoll, Asio over its
io_uring backend (asio_uring), and a raw io_uring server as the floor
(raw_uring). Each of portico, Asio and asio_uring takes its turn in an order
that rotates by round; the floor runs in every other round. The native
servers count no system calls (their stats carry null), so only heap
allocations are counted; download and its probe are skipped (Asio has no
native counterpart of TransmitFile to compare with), and idle trials have no
wineserver to measure.

Spinning (--idle-spin US): every server that can spins, not portico alone: a
thread with nothing to run looks for work for up to US microseconds before it
blocks (portico's io_context::options::idle_spin; Asio polls its io_context;
the io_uring floor reads its completion queue). Natively all four spin; under
Wine portico and Asio do (the IOCP floor has no spin and refuses it).

Usage (scripts/bench.sh runs it after building everything):
    bench/run.py --build-dir build/mingw-bench --client build/bench-load/load_client
                 [--rounds 20] [--seconds 2] [--warmup 0.5] [--only NAME,...]
                 [--out docs]
    bench/run.py --native [--build-dir build/linux-bench] [--results bench/results/native.json] ...
Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import random
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("portico", "asio", "raw")
# The servers that take --idle-spin (bench/servers/harness.hpp).
SPINNING_IMPLS = ("portico", "asio", "asio_uring", "raw_uring")
# The native servers (--native): "asio" is Asio over epoll, its default.
NATIVE_IMPLS = ("portico", "asio", "asio_uring", "raw_uring")
# Counted but not system calls: they read or convert a value in user mode.
NOT_SYSTEM_CALLS = frozenset({"WSAGetLastError", "WSASetLastError", "htons", "ntohs", "htonl", "ntohl"})


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    server_mode: str  # echo | packet | sink | fanout
    client: tuple[str, ...]  # load_client arguments besides host, port, timing
    kind: str = "throughput"  # throughput | idle | fanout | download | probe
    unit: str = "msgs/s"
    impls: tuple[str, ...] = IMPLS
    # False: run only when named in --only (the smoke run's small cases).
    default: bool = True
    # The line the client prints on stderr when its set-up (connecting
    # receivers, idle connections) is done and its warm-up begins.
    ready: str | None = None
    # download and probe: the size of the file the server sends (0: no file).
    file_size: int = 0

    def connections(self) -> int:
        return int(self.client[self.client.index("--connections") + 1])

    def all_connections(self) -> int:
        """Connections open at once: the active ones and the idle ones beside them."""
        idle = int(self.client[self.client.index("--idle-connections") + 1]) if "--idle-connections" in self.client else 0
        return self.connections() + idle


def fanout(receivers: int, size: int, default: bool = True) -> Scenario:
    size_name = "1k" if size == 1024 else str(size)
    size_title = "1 KiB" if size == 1024 else f"{size} B"
    return Scenario(f"fanout-{receivers}x{size_name}", f"fan-out, 1 sender to {receivers:,} receivers, {size_title}",
                    "fanout", ("--mode", "fanout", "--connections", str(receivers), "--depth", "16", "--size", str(size)),
                    kind="fanout", unit="deliveries/s", impls=("portico", "asio"), default=default, ready="joined:")


def mixed(active: int, idle: int, default: bool = True) -> Scenario:
    """Ping-pong on a few connections among many silent ones."""
    return Scenario(f"mixed-{active}of{active + idle}", f"ping-pong, 64 B on {active:,} of {active + idle:,} connections "
                    f"(the rest idle)", "echo",
                    ("--mode", "pingpong", "--connections", str(active), "--idle-connections", str(idle),
                     "--size", "64"), default=default, ready="connected:")


def download(connections: int, size: int, name: str, size_title: str) -> Scenario:
    return Scenario(name, f"download, {connections} connection{'s' if connections > 1 else ''}, {size_title} file",
                    "download", ("--mode", "download", "--connections", str(connections), "--size", str(size)),
                    kind="download", unit="files/s", impls=("portico", "asio"), file_size=size)


SCENARIOS = (
    Scenario("pingpong-1x64", "ping-pong, 1 connection, 64 B", "echo",
             ("--mode", "pingpong", "--connections", "1", "--size", "64")),
    Scenario("pingpong-1x1k", "ping-pong, 1 connection, 1 KiB", "echo",
             ("--mode", "pingpong", "--connections", "1", "--size", "1024")),
    Scenario("pingpong-1x16k", "ping-pong, 1 connection, 16 KiB", "echo",
             ("--mode", "pingpong", "--connections", "1", "--size", "16384")),
    Scenario("pingpong-64x64", "ping-pong, 64 connections, 64 B", "echo",
             ("--mode", "pingpong", "--connections", "64", "--size", "64")),
    Scenario("pingpong-64x1k", "ping-pong, 64 connections, 1 KiB", "echo",
             ("--mode", "pingpong", "--connections", "64", "--size", "1024")),
    Scenario("pingpong-64x16k", "ping-pong, 64 connections, 16 KiB", "echo",
             ("--mode", "pingpong", "--connections", "64", "--size", "16384")),
    # Connected before the warm-up: under Wine, 1,000 accepts take longer than it.
    Scenario("pingpong-1000x64", "ping-pong, 1,000 connections, 64 B", "echo",
             ("--mode", "pingpong", "--connections", "1000", "--size", "64", "--connect-first"), ready="connected:"),
    mixed(100, 9900),
    Scenario("packets-1x16", "framed packets, depth 16, 1 connection, 64 B bodies", "packet",
             ("--mode", "pipeline", "--connections", "1", "--depth", "16", "--size", "64"), unit="packets/s"),
    Scenario("packets-64x4", "framed packets, depth 4, 64 connections, 64 B bodies", "packet",
             ("--mode", "pipeline", "--connections", "64", "--depth", "4", "--size", "64"), unit="packets/s"),
    Scenario("packets-1x16-plain", "the same bytes through plain echo (reference)", "echo",
             ("--mode", "pipeline", "--connections", "1", "--depth", "16", "--size", "64"), unit="packets/s"),
    Scenario("bulk-oneway", "bulk one way, 1 connection, 64 KiB writes", "sink",
             ("--mode", "bulk", "--connections", "1", "--size", "65536", "--direction", "oneway"), unit="writes/s"),
    Scenario("bulk-both", "bulk both ways, 1 connection, 64 KiB writes", "echo",
             ("--mode", "bulk", "--connections", "1", "--size", "65536", "--direction", "both"), unit="writes/s"),
    Scenario("churn", "accept churn: connect, echo 64 B, close (4 at a time)", "echo",
             ("--mode", "churn", "--connections", "4", "--size", "64"), unit="connections/s"),
    Scenario("burst-1000", "a burst of 1,000 connects, one echo each", "echo",
             ("--mode", "burst", "--connections", "1000"), unit="connections/s"),
    Scenario("idle-1000", "1,000 idle connections", "echo",
             ("--mode", "idle", "--connections", "1000"), kind="idle", unit="bytes/connection"),
    Scenario("idle-10000", "10,000 idle connections, lean echo", "echo-lean",
             ("--mode", "idle", "--connections", "10000"), kind="idle", unit="bytes/connection"),
    Scenario("idle-packet-10000", "10,000 idle connections, lean framed echo", "packet-lean",
             ("--mode", "idle", "--connections", "10000", "--framed", "--size", "60"), kind="idle",
             unit="bytes/connection"),
    Scenario("idle-100", "100 idle connections, lean echo", "echo-lean",
             ("--mode", "idle", "--connections", "100"), kind="idle", unit="bytes/connection", default=False),
    Scenario("idle-packet-100", "100 idle connections, lean framed echo", "packet-lean",
             ("--mode", "idle", "--connections", "100", "--framed", "--size", "60"), kind="idle",
             unit="bytes/connection", default=False),
    fanout(100, 64),
    fanout(100, 1024),
    fanout(1000, 64),
    fanout(1000, 1024),
    fanout(10, 64, default=False),
    mixed(10, 490, default=False),
    download(1, 64 << 20, "download-1x64m", "64 MiB"),
    download(16, 64 << 10, "download-16x64k", "64 KiB"),
    # The probe: a ping-pong connection's p99 alone, then beside 2 connections downloading.
    Scenario("download-probe", "ping-pong 64 B beside 2 connections downloading a 64 MiB file", "download",
             ("--mode", "download", "--connections", "2", "--size", str(64 << 20)),
             kind="probe", unit="p99 growth", impls=("portico", "asio"), file_size=64 << 20),
)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def pinned(core: int | None, argv: list[str]) -> list[str]:
    return argv if core is None else ["taskset", "-c", str(core), *argv]


class Server:
    """One benchmark server under Wine, controlled through its stdin."""

    def __init__(self, impl: str, mode: str, exe: Path, prefix: Path | None, core: int | None,
                 extra: tuple[str, ...] = ()):
        """prefix: the Wine prefix, or None for a native server, run directly."""
        self.impl = impl
        launch = [str(exe)] if prefix is None else ["bash", str(ROOT / "scripts/wine-run.sh"), str(prefix), str(exe)]
        argv = pinned(core, [*launch, "--mode", mode, *extra])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.proc.stdout.readline().strip()
        if not first.startswith("listening on "):
            self.close()
            raise RuntimeError(f"{impl}: expected 'listening on HOST:PORT', got {first!r}")
        self.port = int(first.rsplit(":", 1)[1])
        # Before its first idle trial: its resident set (KiB) and its heap
        # (live bytes besides the lean modes' buffer pool).
        self.rss_baseline: int | None = None
        self.heap_baseline: int | None = None

    def rss_kib(self) -> int | None:
        """The resident set of the server's Wine process. The runner starts it
        through taskset, bash and wine64, which all exec, so it keeps the pid."""
        return resident_kib(self.proc.pid)

    def wait_closed(self, timeout: float = 120) -> None:
        """Waits until the server has no connection open (after an idle trial it
        is still closing thousands)."""
        deadline = time.monotonic() + timeout
        while self.stats()["open"] > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.impl}: connections still open {timeout} s after the client closed them")
            time.sleep(0.1)

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def resident_kib(pid: int) -> int | None:
    """VmRSS of a process, in KiB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def raise_descriptor_limit(needed: int) -> None:
    """Raises this process's soft RLIMIT_NOFILE to its hard limit, for the
    wineserver and the servers it starts. Each socket of a server under Wine
    is a descriptor in the wineserver (which keeps the soft limit it was
    started with; the Wine process itself raises its own to the hard limit)
    and one in the server's process while it uses it; the load client raises
    its own. Says so when the hard limit is below what the scenarios need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        log(f"run.py: these scenarios need about {needed} file descriptors per process and the hard limit is "
            f"{hard}: raise it (ulimit -Hn as root, or LimitNOFILE= for a service), or expect failed connects")
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wineserver(action: str, prefix: Path, core: int | None) -> None:
    """Starts or stops the wineserver of the prefix (tests/drivers/wine-server.sh)."""
    subprocess.run(pinned(core, ["bash", str(ROOT / "tests/drivers/wine-server.sh"), action, str(prefix)]), check=True)


def restart_wineserver(prefix: Path, core: int | None) -> None:
    """Stops the prefix's wineserver, makes sure it is gone, and starts a new one."""
    old = wineserver_pid(prefix)
    wineserver("stop", prefix, core)
    deadline = time.monotonic() + 30
    # NOTE: `wineserver -k` has been seen to leave the server running (once, right after a
    # server closed 10,000 connections); then it is asked again, and at last killed by its pid.
    while old is not None and wineserver_pid(prefix) == old:
        if time.monotonic() > deadline:
            log(f"run.py: the wineserver of {prefix} (pid {old}) did not stop; killing it")
            os.kill(old, signal.SIGKILL)
            time.sleep(1)
            break
        time.sleep(0.5)
        wineserver("stop", prefix, core)
    wineserver("start", prefix, core)


def wineserver_pid(prefix: Path) -> int | None:
    """The wineserver of a prefix: the one whose working directory is the
    prefix's server directory (/tmp/.wine-UID/server-DEV-INODE)."""
    st = prefix.stat()
    suffix = f"/server-{st.st_dev:x}-{st.st_ino:x}"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip().startswith("wineserver") and \
                    os.readlink(f"/proc/{entry}/cwd").endswith(suffix):
                return int(entry)
        except OSError:
            pass
    return None


def open_files_limit(pid: int) -> int | None:
    """A process's soft limit of open files, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                value = line.split()[3]
                return None if value == "unlimited" else int(value)
    except OSError:
        pass
    return None


def steal_jiffies() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[7] if len(fields) > 7 else 0, sum(fields)


def delta(after: dict, before: dict, key: str) -> int:
    return after[key] - before[key]


def system_calls(stats: dict) -> int | None:
    """The Win32 calls that reach the system, from a stats line's calls map;
    None from a native server, which counts none."""
    if stats["calls"] is None:
        return None
    return sum(n for name, n in stats["calls"].items() if name not in NOT_SYSTEM_CALLS)


def counted_delta(after: dict, before: dict, key: str) -> int | None:
    """after - before of a counted-calls field, None where it is not counted (native)."""
    return None if after[key] is None else after[key] - before[key]


def run_trial(scenario: Scenario, server: Server, client: Path, args, core: int | None) -> dict:
    """One timed client run against one server; counted metrics from the
    stats taken inside the steady window (after warm-up, before the end)."""
    argv = pinned(core, [str(client), "--host", "127.0.0.1", "--port", str(server.port), *scenario.client,
                         "--duration", str(args.seconds), "--warmup", str(args.warmup)])
    steal0 = steal_jiffies()
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if scenario.ready:
        # Its warm-up starts once its set-up is done (the receivers joined, the
        # idle connections open); that is not measured.
        said = ""
        line = proc.stderr.readline()
        while line and not line.startswith(scenario.ready):
            said += line
            line = proc.stderr.readline()
        if not line:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"load client ended before its set-up was done: {said.strip()[-500:]}")
        if said:
            log(f"    {server.impl}: {said.strip()[-300:]}")
        start = time.monotonic()
    # The window: a little after warm-up ends until a little before the run does.
    margin = min(0.2, args.seconds / 10)
    time.sleep(max(0.0, start + args.warmup + margin - time.monotonic()))
    before, t1 = server.stats(), time.monotonic()
    time.sleep(max(0.0, start + args.warmup + args.seconds - margin - time.monotonic()))
    after, t2 = server.stats(), time.monotonic()
    out, err = proc.communicate(timeout=args.seconds + args.warmup + 120)
    steal1 = steal_jiffies()
    if not out.strip():
        raise RuntimeError(f"load client printed nothing ({proc.returncode}): {err.strip()[-500:]}")
    result = json.loads(out)
    if result["errors"]:
        log(f"    {server.impl}: {result['errors']} client errors: {err.strip()[-300:]}")
        result["stderr"] = err[-2000:]
    window_messages = result["msgs_per_s"] * (t2 - t1)
    per = (lambda n: n / window_messages) if window_messages > 0 else (lambda n: float("nan"))
    dequeues = counted_delta(after, before, "dequeue_calls")
    calls_after, calls_before = after["calls"] or {}, before["calls"] or {}
    counted = after["calls"] is not None
    if scenario.kind == "fanout":
        # Each packet the sender sends is delivered once to every receiver.
        result["allocs_per_broadcast"] = per(delta(after, before, "allocs")) * scenario.connections()
    if scenario.client[1] == "pingpong" and after["open"] < scenario.all_connections():
        # The client counts a connection the server dropped only when it next uses it.
        log(f"    {server.impl}: the server had {after['open']} connections open, "
            f"not {scenario.all_connections()}")
    if scenario.kind == "download":
        # Files are few in a window; the bytes, counted as they arrive, are exact.
        window_mib = result["bytes_per_s"] * (t2 - t1) / (1024 * 1024)
        result["win32_per_mib"] = ((system_calls(after) - system_calls(before)) / window_mib if window_mib
                                   else float("nan")) if counted else None
    result.update(
        impl=server.impl,
        server_open=after["open"],
        win32_per_msg=per(system_calls(after) - system_calls(before)) if counted else None,
        allocs_per_msg=per(delta(after, before, "allocs")),
        completions_per_dequeue=(delta(after, before, "completions") / dequeues if dequeues else float("nan"))
        if counted else None,
        calls_per_msg={k: per(v - calls_before.get(k, 0)) for k, v in calls_after.items()
                       if v - calls_before.get(k, 0) > 0},
        steal_pct=100.0 * (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1]),
    )
    return result


def run_idle_trial(scenario: Scenario, server: Server, client: Path, args, core: int | None) -> dict:
    """What an idle connection costs the server, per connection: its live
    heap with the connections open and silent, and its resident set, each
    against the server before its first idle trial (run_scenario starts a
    server for each: caches keep the blocks of connections that ended, and a
    resident set does not shrink when the heap is freed); and the wineserver's
    resident set, against before this trial. The lean modes' pool of receive
    buffers (all free while the connections are idle) is the server's, not a
    connection's: counted apart."""
    server.wait_closed()
    before = server.stats()
    if server.rss_baseline is None:
        server.rss_baseline = server.rss_kib()
        server.heap_baseline = before["live_bytes"] - before.get("pool_bytes", 0)
    argv = pinned(core, [str(client), "--host", "127.0.0.1", "--port", str(server.port), *scenario.client,
                         "--duration", "600", "--warmup", "0", "--hold-stdin"])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said = ""
    line = proc.stderr.readline()
    while line and not line.startswith("idle:"):
        said += line
        line = proc.stderr.readline()
    if not line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"load client ended before its connections were idle: {said.strip()[-500:]}")
    # Let the server settle its last completions before reading its heap.
    time.sleep(0.5)
    during = server.stats()
    rss = server.rss_kib()
    # NOTE: looked up again: a wineserver that exited is started anew by the next Wine process.
    wineserver = wineserver_pid(args.prefix) if args.prefix is not None else None
    wineserver_rss = resident_kib(wineserver) if wineserver and wineserver == args.wineserver_pid else None
    # communicate() closes the client's stdin: its cue to ping once more and end.
    out, err = proc.communicate(timeout=300)
    result = json.loads(out)
    if result["errors"]:
        log(f"    {server.impl}: {result['errors']} client errors: {err.strip()[-300:]}")
        result["stderr"] = err[-2000:]
    connections = scenario.connections()
    if during["open"] != connections:
        log(f"    {server.impl}: the server had {during['open']} connections open, not {connections}")

    def per_connection_kib(now: int | None, then: int | None) -> float | None:
        return None if now is None or then is None else (now - then) * 1024 / connections

    heap = during["live_bytes"] - during.get("pool_bytes", 0)
    result.update(impl=server.impl, server_open=during["open"],
                  bytes_per_connection=(heap - server.heap_baseline) / connections,
                  allocs_per_connection=delta(during, before, "allocs") / connections,
                  pool_bytes=during.get("pool_bytes", 0),
                  rss_per_connection=per_connection_kib(rss, server.rss_baseline),
                  wineserver_rss_per_connection=per_connection_kib(wineserver_rss, args.wineserver_rss_baseline),
                  rss_kib={"server": [server.rss_baseline, rss],
                           "wineserver": [args.wineserver_rss_baseline, wineserver_rss], "wineserver_pid": wineserver},
                  steal_pct=0.0)
    return result


def run_probe_trial(scenario: Scenario, server: Server, client: Path, args, core: int | None) -> dict:
    """A 64-byte ping-pong connection's round trips against the download
    server: alone, then while the scenario's downloads run on other
    connections. Its p99 grows if the server's threads are kept from the port
    (a thread waiting for the disk would be)."""
    base = [str(client), "--host", "127.0.0.1", "--port", str(server.port)]
    ping = [*base, "--mode", "pingpong", "--connections", "1", "--size", "64",
            "--duration", str(args.seconds), "--warmup", str(args.warmup)]
    timeout = args.seconds + args.warmup + 120
    steal0 = steal_jiffies()
    alone = json.loads(subprocess.run(pinned(core, ping), capture_output=True, text=True, timeout=timeout).stdout)
    # The downloads start first and last past the probe's end.
    downloads = subprocess.Popen(pinned(core, [*base, *scenario.client, "--duration", str(args.seconds + 2 * args.warmup),
                                               "--warmup", str(args.warmup / 2)]),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(args.warmup / 2)
    loaded = json.loads(subprocess.run(pinned(core, ping), capture_output=True, text=True, timeout=timeout).stdout)
    out, err = downloads.communicate(timeout=timeout)
    steal1 = steal_jiffies()
    moved = json.loads(out) if out.strip() else {"errors": 1, "msgs_per_s": 0.0, "bytes_per_s": 0.0}
    if not out.strip():
        log(f"    {server.impl}: the download client printed nothing: {err.strip()[-300:]}")
    p99_alone, p99_loaded = alone["rtt_us"]["p99"], loaded["rtt_us"]["p99"]
    return {"impl": server.impl, "errors": alone["errors"] + loaded["errors"] + moved["errors"],
            "p99_alone_us": p99_alone, "p99_loaded_us": p99_loaded, "growth": p99_loaded / p99_alone,
            "msgs_per_s": moved["msgs_per_s"], "bytes_per_s": moved["bytes_per_s"],
            "steal_pct": 100.0 * (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])}


def bootstrap_median(values: list[float], rng: random.Random, resamples: int = 10_000) -> tuple[float, float]:
    """95% interval of the median, by resampling the values with replacement."""
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def median_of(trials: list[dict], key: str) -> float:
    values = [t[key] for t in trials if t.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def rtt_median(trials: list[dict], key: str) -> float | None:
    """The median over the trials of one of the client's rtt_us values."""
    values = [t["rtt_us"][key] for t in trials if t.get("rtt_us") and key in t["rtt_us"]]
    return statistics.median(values) if values else None


# What a scenario's portico / Asio ratio compares: msgs_per_s unless named here.
RATIO_KEY = {"idle": "bytes_per_connection", "probe": "growth", "download": "bytes_per_s"}


def summarize(scenario: Scenario, trials: dict[str, list[dict]], rng: random.Random) -> dict:
    s = {"name": scenario.name, "title": scenario.title, "unit": scenario.unit, "kind": scenario.kind,
         "mode": scenario.server_mode, "impls": {}}
    for impl, ts in trials.items():
        if not ts:
            continue
        entry = {"trials": len(ts), "steal_pct": median_of(ts, "steal_pct"),
                 "errors": sum(t["errors"] for t in ts)}
        if scenario.kind == "idle":
            entry.update(bytes_per_connection=median_of(ts, "bytes_per_connection"),
                         allocs_per_connection=median_of(ts, "allocs_per_connection"),
                         pool_bytes=median_of(ts, "pool_bytes"),
                         rss_per_connection=median_of(ts, "rss_per_connection"),
                         wineserver_rss_per_connection=median_of(ts, "wineserver_rss_per_connection"))
        elif scenario.kind == "probe":
            entry.update(p99_alone_us=median_of(ts, "p99_alone_us"), p99_loaded_us=median_of(ts, "p99_loaded_us"),
                         growth=median_of(ts, "growth"), msgs_per_s=median_of(ts, "msgs_per_s"),
                         bytes_per_s=median_of(ts, "bytes_per_s"))
        else:
            entry.update(msgs_per_s=median_of(ts, "msgs_per_s"), bytes_per_s=median_of(ts, "bytes_per_s"),
                         p50_us=rtt_median(ts, "p50"), p99_us=rtt_median(ts, "p99"), p999_us=rtt_median(ts, "p999"),
                         worst_connection_p50_us=rtt_median(ts, "worst_connection_p50"),
                         best_connection_p50_us=rtt_median(ts, "best_connection_p50"),
                         win32_per_msg=median_of(ts, "win32_per_msg"), allocs_per_msg=median_of(ts, "allocs_per_msg"),
                         completions_per_dequeue=median_of(ts, "completions_per_dequeue"))
            calls: dict[str, list[float]] = {}
            for t in ts:
                for k, v in t["calls_per_msg"].items():
                    calls.setdefault(k, []).append(v)
            entry["calls_per_msg"] = {k: statistics.median(v + [0.0] * (len(ts) - len(v))) for k, v in calls.items()}
            if scenario.kind == "fanout":
                entry["allocs_per_broadcast"] = median_of(ts, "allocs_per_broadcast")
            if scenario.kind == "download":
                entry["win32_per_mib"] = median_of(ts, "win32_per_mib")
        s["impls"][impl] = entry
    key = RATIO_KEY.get(scenario.kind, "msgs_per_s")
    for other in [i for i in trials if i != "portico"]:
        if not trials.get(other):
            continue
        # Round by round: trials[i] of both were run back to back.
        pairs = [(p[key], o[key]) for p, o in zip(trials["portico"], pairs_for(trials, other)) if o is not None]
        ratios = [p / o for p, o in pairs if o > 0]
        if ratios:
            low, high = bootstrap_median(ratios, rng)
            s[f"ratio_{other}"] = {"median": statistics.median(ratios), "low": low, "high": high, "pairs": len(ratios)}
    return s


def pairs_for(trials: dict[str, list[dict]], other: str) -> list[dict | None]:
    """The trial of `other` from the same round as each portico trial."""
    by_round = {t["round"]: t for t in trials[other]}
    return [by_round.get(t["round"]) for t in trials["portico"]]


def served_file(scenario: Scenario, args) -> list[str]:
    """The server's --file for a download scenario (written once by the load
    client, so it can check every byte), as a Windows path; [] for others."""
    if not scenario.file_size:
        return []
    path = args.build_dir.resolve() / "bench-files" / f"{scenario.file_size}.bin"
    if not path.exists() or path.stat().st_size != scenario.file_size:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(args.client), "--write-file", str(path), "--size", str(scenario.file_size)], check=True)
    # Wine's Z: drive is the Linux root.
    return ["--file", "Z:" + str(path).replace("/", "\\")]


def native_impls(scenario: Scenario) -> tuple[str, ...]:
    """A scenario's servers natively: Asio on both of its backends, the io_uring floor."""
    names = {"portico": ("portico",), "asio": ("asio", "asio_uring"), "raw": ("raw_uring",)}
    return tuple(n for impl in scenario.impls for n in names[impl])


def round_order(scenario: Scenario, r: int, idle: bool) -> list[str]:
    """Who runs in round r, in order. Under Wine portico and Asio alternate
    (ABBA); natively the libraries' order rotates by round. The floor comes
    last, in every other round (every round for idle)."""
    libraries = [i for i in scenario.impls if not i.startswith("raw")]
    if libraries == ["portico", "asio"]:
        order = ["portico", "asio"] if r % 2 == 0 else ["asio", "portico"]
    else:
        order = libraries[r % len(libraries):] + libraries[:r % len(libraries)]
    floor = [i for i in scenario.impls if i.startswith("raw")]
    if floor and (r % 2 == 0 or idle):
        order += floor
    return order


def run_scenario(scenario: Scenario, exes: dict[str, Path], prefix: Path | None, client: Path, args, cores) -> dict:
    extra = tuple(served_file(scenario, args))

    def start(impl: str) -> Server:
        knobs = tuple(shlex.split(args.portico_args)) if impl == "portico" else ()
        spin = ("--idle-spin", str(args.idle_spin)) if args.idle_spin and impl in SPINNING_IMPLS else ()
        return Server(impl, scenario.server_mode, exes[impl], prefix, cores[0], extra + knobs + spin)

    idle = scenario.kind == "idle"
    # NOTE: an idle trial gets a server of its own, and a wineserver of its
    # own, started for it: what a connection costs is measured against fresh
    # processes, not ones whose caches and resident sets still hold the
    # connections of a trial before (neither shrinks when memory is freed).
    servers = {} if idle else {impl: start(impl) for impl in scenario.impls}
    trials: dict[str, list[dict]] = {impl: [] for impl in scenario.impls}
    rounds = args.idle_rounds if idle else args.rounds
    trial = {"idle": run_idle_trial, "probe": run_probe_trial}.get(scenario.kind, run_trial)
    try:
        for r in range(rounds):
            for impl in round_order(scenario, r, idle):
                if idle and prefix is not None:
                    restart_wineserver(args.prefix, cores[0])
                server = servers[impl] if not idle else start(impl)
                try:
                    args.wineserver_pid = wineserver_pid(args.prefix) if prefix is not None else None
                    args.wineserver_rss_baseline = resident_kib(args.wineserver_pid) if args.wineserver_pid else None
                    t = trial(scenario, server, client, args, cores[1])
                finally:
                    if idle:
                        server.close()
                t["round"] = r
                trials[impl].append(t)
            p, a = trials["portico"][-1], trials["asio"][-1]
            key = RATIO_KEY.get(scenario.kind, "msgs_per_s")
            log(f"  round {r + 1}/{rounds}: portico {p[key]:,.3f}  asio {a[key]:,.3f}  ratio {p[key] / max(a[key], 1e-9):.3f}")
    finally:
        for s in servers.values():
            s.close()
    summary = summarize(scenario, trials, random.Random(args.seed))
    summary["trials"] = trials
    return summary


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def environment(args, cores) -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if args.native:
        wine = "none (native)"
        compiler = tool_version(["g++", "--version"])
    else:
        wine = tool_version(["wine64", "--version"]) if subprocess.run(["sh", "-c", "command -v wine64"],
                                                                     capture_output=True).returncode == 0 \
            else tool_version(["wine", "--version"])
        compiler = tool_version(["x86_64-w64-mingw32-g++-posix", "--version"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
        "native": args.native,
        "wine": wine,
        "compiler": compiler,
        "asio": "1.22 (Debian libasio-dev)",
        "server_core": cores[0], "client_core": cores[1],
        "rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup,
        "portico_args": args.portico_args,
        "idle_spin_us": args.idle_spin,
    }


def merged(earlier: dict, now: dict) -> dict:
    """The earlier results with this run's scenarios in place of theirs (in
    SCENARIOS order), each marked with the environment it was run in."""
    for s in now["scenarios"]:
        s["environment"] = now["environment"]
    by_name = {s["name"]: s for s in earlier["scenarios"]}
    by_name.update({s["name"]: s for s in now["scenarios"]})
    order = [sc.name for sc in SCENARIOS]
    scenarios = sorted(by_name.values(), key=lambda s: order.index(s["name"]) if s["name"] in order else len(order))
    return {"environment": earlier["environment"], "scenarios": scenarios}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--native", action="store_true",
                    help="the native Linux servers (preset linux-bench), run directly: see above")
    ap.add_argument("--build-dir", type=Path, default=None,
                    help="default build/mingw-bench, or build/linux-bench with --native")
    ap.add_argument("--client", type=Path, default=ROOT / "build/bench-load/load_client")
    ap.add_argument("--rounds", type=int, default=20, help="rounds per scenario (portico/Asio pairs)")
    ap.add_argument("--idle-rounds", type=int, default=3, help="rounds of the idle scenario (a count, not a timing)")
    ap.add_argument("--seconds", type=float, default=2.0, help="measured seconds per trial")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per trial, not measured")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--portico-args", default="",
                    help="extra flags for the portico server: its scheduling knobs, e.g. '--inline-budget 16' "
                         "(bench_portico --help); the default is the library's defaults")
    ap.add_argument("--idle-spin", type=int, default=0, metavar="US",
                    help="every server that can spins for up to US microseconds when idle before it blocks "
                         "(see above); the default, 0, blocks at once")
    ap.add_argument("--results", type=Path, default=None,
                    help="default bench/results/latest.json, or bench/results/native.json with --native")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other scenarios of an existing --results file; these replace theirs and "
                         "carry the environment of this run")
    args = ap.parse_args()
    if args.idle_spin and "--idle-spin" in args.portico_args:
        ap.error("--idle-spin is given to every server: leave it out of --portico-args")
    if args.build_dir is None:
        args.build_dir = ROOT / ("build/linux-bench" if args.native else "build/mingw-bench")
    if args.results is None:
        args.results = ROOT / "bench/results" / ("native.json" if args.native else "latest.json")
    if args.native:
        return main_native(args)

    exes = {impl: args.build_dir / "bench/servers" / f"bench_{impl}.exe" for impl in IMPLS}
    for exe in [*exes.values(), args.client]:
        if not exe.exists():
            log(f"run.py: {exe} is missing: build first (scripts/bench.sh does)")
            return 2
    # Server and wineserver on one core, the client on the other.
    cores = (0, 1) if (os.cpu_count() or 1) >= 2 else (None, None)
    # NOTE: absolute: the wineserver refuses a relative WINEPREFIX, and wine-server.sh
    # hides its complaint, so a relative prefix was never stopped.
    prefix = (args.build_dir / "wineprefix").resolve()
    wanted = set(filter(None, args.only.split(",")))
    scenarios = [s for s in SCENARIOS if s.name in wanted or (not wanted and s.default)]

    # Each connection: a socket in the client, one in the wineserver, one in the server's process.
    needed = max((s.all_connections() for s in scenarios), default=0) + 1024
    raise_descriptor_limit(needed)
    wineserver("start", prefix, cores[0])
    args.prefix = prefix
    server_pid = wineserver_pid(args.prefix)
    limit = open_files_limit(server_pid) if server_pid else None
    if limit is not None and limit < needed:
        log(f"run.py: the wineserver of {prefix} (pid {server_pid}) may open only {limit} files, and these "
            f"scenarios need about {needed}: it was started before this run with a lower limit; stop it "
            f"(tests/drivers/wine-server.sh stop {prefix}) and run again")
    results = {"environment": environment(args, cores), "scenarios": []}
    try:
        for scenario in scenarios:
            log(f"{scenario.name}: {scenario.title}")
            results["scenarios"].append(run_scenario(scenario, exes, prefix, args.client, args, cores))
    finally:
        wineserver("stop", prefix, None)
    return write_results(args, results)


def write_results(args, results: dict) -> int:
    if args.merge and args.results.exists():
        results = merged(json.loads(args.results.read_text()), results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1, allow_nan=True) + "\n")
    log(f"wrote {args.results}")
    return 0


def main_native(args) -> int:
    """The native run: the servers run directly, pinned as under Wine."""
    exes = {impl: args.build_dir / "bench/servers" / f"bench_{impl}" for impl in NATIVE_IMPLS}
    for exe in [*exes.values(), args.client]:
        if not exe.exists():
            log(f"run.py: {exe} is missing: build first (scripts/bench.sh --native does)")
            return 2
    # Server on one core, the client on the other.
    cores = (0, 1) if (os.cpu_count() or 1) >= 2 else (None, None)
    args.prefix = None
    wanted = set(filter(None, args.only.split(",")))
    scenarios = [s for s in SCENARIOS if s.name in wanted or (not wanted and s.default)]
    # Each connection: a socket in the client and one in the server.
    raise_descriptor_limit(max((s.all_connections() for s in scenarios), default=0) + 1024)
    results = {"environment": environment(args, cores), "scenarios": []}
    for scenario in scenarios:
        if scenario.kind in ("download", "probe"):
            log(f"{scenario.name}: skipped natively (Asio has no native TransmitFile to compare with)")
            continue
        native = dataclasses.replace(scenario, impls=native_impls(scenario))
        log(f"{scenario.name}: {scenario.title}")
        results["scenarios"].append(run_scenario(native, exes, None, args.client, args, cores))
    return write_results(args, results)


if __name__ == "__main__":
    sys.exit(main())
