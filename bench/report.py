#!/usr/bin/env python3
"""Turns the runner's results (bench/results/latest.json) into
docs/benchmarks.md (from bench/benchmarks.md.in) and the PNG charts in
docs/images/, drawn by gnuplot (bench/charts.gp).

    bench/report.py [--results bench/results/latest.json] [--docs docs]
                    [--native-results bench/results/native.json]
                    [--native-spin-results bench/results/native-spin.json]
The native run's results (run.py --native), when that file exists, make the
page's native section: tables of their own, beside the Wine ones, which they
leave as they are. A native run in which every server spins when idle
(run.py --native --idle-spin US) makes the section after it, when its file
exists.
Standard library only; gnuplot from Debian's gnuplot-nox.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("portico", "asio", "raw")


def num(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def small(x: float | None) -> str:
    """Counts per message: two decimals, or three below 0.1."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3f}" if abs(x) < 0.1 else f"{x:.2f}"


def ratio_cell(r: dict | None) -> str:
    if not r:
        return "–"
    return f"{r['median']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"


def verdict(r: dict | None) -> str:
    if not r:
        return "–"
    if r["low"] > 1:
        return "ahead"
    if r["high"] < 1:
        return "behind"
    return "equal"


def throughput_table(scenarios: list[dict]) -> str:
    rows = ["| scenario | unit | portico | Asio | floor | portico / Asio [95% CI] | | portico / floor [95% CI] |",
            "|---|---|--:|--:|--:|--:|---|--:|"]
    for s in scenarios:
        if s["kind"] != "throughput":
            continue
        i = s["impls"]
        rows.append(f"| {s['title']} | {s['unit']} | {num(i['portico']['msgs_per_s'])} | {num(i['asio']['msgs_per_s'])} "
                    f"| {num(i['raw']['msgs_per_s'])} | {ratio_cell(s.get('ratio_asio'))} | {verdict(s.get('ratio_asio'))} "
                    f"| {ratio_cell(s.get('ratio_raw'))} |")
    return "\n".join(rows)


def latency_table(scenarios: list[dict]) -> str:
    rows = ["| scenario | portico p50 / p99 / p99.9 | worst connection | Asio p50 / p99 / p99.9 | worst connection "
            "| floor p50 / p99 / p99.9 | worst connection |",
            "|---|--:|--:|--:|--:|--:|--:|"]
    for s in scenarios:
        if s["kind"] != "throughput" or s["impls"]["portico"].get("p50_us") is None:
            continue
        cells = []
        for impl in IMPLS:
            e = s["impls"].get(impl)
            if e is None:
                cells += ["–", "–"]
                continue
            cells.append(f"{num(e['p50_us'])} / {num(e['p99_us'])} / {num(e['p999_us'])}")
            cells.append(num(e.get("worst_connection_p50_us")))
        rows.append(f"| {s['title']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def counted_table(scenarios: list[dict]) -> str:
    rows = ["| scenario | Win32 calls per message (portico / Asio / floor) | completions per dequeue "
            "(portico / Asio / floor) | heap allocations per message (portico / Asio / floor) |",
            "|---|--:|--:|--:|"]
    for s in scenarios:
        if s["kind"] != "throughput":
            continue
        i = s["impls"]
        calls = " / ".join(small(i[x]["win32_per_msg"]) for x in IMPLS)
        batch = " / ".join(small(i[x]["completions_per_dequeue"]) for x in IMPLS)
        allocs = " / ".join(small(i[x]["allocs_per_msg"]) for x in IMPLS)
        rows.append(f"| {s['title']} | {calls} | {batch} | {allocs} |")
    return "\n".join(rows)


def idle_table(scenarios: list[dict]) -> str:
    """One table per idle scenario: what a silent connection costs each server."""
    tables = []
    for s in scenarios:
        if s["kind"] != "idle":
            continue
        i = s["impls"]
        lean = s.get("mode", "echo").endswith("-lean")

        def row(label: str, value) -> str:
            return f"| {label} | " + " | ".join(value(i[x]) if x in i else "–" for x in IMPLS) + " |"

        def kib_as_bytes(e: dict, key: str) -> str:
            return num(e.get(key))

        rows = [f"*{s['title']}* ({s['name']}):", "", "| per connection | portico | Asio | floor |", "|---|--:|--:|--:|"]
        rows.append(row("heap bytes" + (" (the pool apart)" if lean else ""), lambda e: num(e["bytes_per_connection"])))
        if not lean:
            # Every server gives each connection the 64 KiB receive buffer of PROTOCOL.md.
            rows.append(row("of which beyond the 64 KiB buffer", lambda e: num(e["bytes_per_connection"] - 64 * 1024)))
        rows.append(row("heap allocations", lambda e: small(e["allocs_per_connection"])))
        rows.append(row("resident bytes of the server", lambda e: kib_as_bytes(e, "rss_per_connection")))
        rows.append(row("resident bytes of the wineserver", lambda e: kib_as_bytes(e, "wineserver_rss_per_connection")))
        if lean:
            rows.append(row("the pool, for all (64 KiB buffers)",
                            lambda e: num(e["pool_bytes"] / 65536) if e.get("pool_bytes") is not None else "–"))
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def fanout_table(scenarios: list[dict]) -> str:
    rows = ["| scenario | portico | Asio | portico / Asio [95% CI] | | portico p50 / p99 / p99.9 | "
            "Asio p50 / p99 / p99.9 |",
            "|---|--:|--:|--:|---|--:|--:|"]
    for s in scenarios:
        if s["kind"] != "fanout":
            continue
        i = s["impls"]
        times = [f"{num(i[x]['p50_us'])} / {num(i[x]['p99_us'])} / {num(i[x]['p999_us'])}" for x in ("portico", "asio")]
        rows.append(f"| {s['title']} | {num(i['portico']['msgs_per_s'])} | {num(i['asio']['msgs_per_s'])} "
                    f"| {ratio_cell(s.get('ratio_asio'))} | {verdict(s.get('ratio_asio'))} | {times[0]} | {times[1]} |")
    return "\n".join(rows)


def per_send(entry: dict) -> float | None:
    """Deliveries per WSASend: how many packets a write gathers."""
    sends = entry["calls_per_msg"].get("WSASend", 0.0)
    return 1 / sends if sends > 0 else None


def fanout_counted_table(scenarios: list[dict]) -> str:
    rows = ["| scenario | deliveries per WSASend | Win32 calls per delivery | heap allocations per delivery "
            "| heap allocations per packet sent |",
            "|---|--:|--:|--:|--:|"]
    both = ("portico", "asio")
    for s in scenarios:
        if s["kind"] != "fanout":
            continue
        i = s["impls"]
        gathered = " / ".join(num(per_send(i[x]), 1) for x in both)
        calls = " / ".join(small(i[x]["win32_per_msg"]) for x in both)
        allocs = " / ".join(small(i[x]["allocs_per_msg"]) for x in both)
        sent = " / ".join(small(i[x]["allocs_per_broadcast"]) for x in both)
        rows.append(f"| {s['title']} | {gathered} | {calls} | {allocs} | {sent} |")
    return "\n".join(rows)


def fanout_summary(scenarios: list[dict]) -> str:
    fan = [s for s in scenarios if s["kind"] == "fanout" and s.get("ratio_asio")]
    if not fan:
        return ""
    ratios = ", ".join(f"{s['name']} {s['ratio_asio']['median']:.2f}" for s in fan)
    allocs = ", ".join(f"{small(s['impls']['portico']['allocs_per_msg'])}" for s in fan)
    return (f"\n- Fan-out, deliveries per second (portico / Asio): {ratios}; portico's heap allocations "
            f"per delivery: {allocs}.")


def download_table(scenarios: list[dict]) -> str:
    mib = 1024 * 1024
    rows = ["| scenario | portico MiB/s | Asio MiB/s | portico / Asio [95% CI] | | Win32 calls per MiB "
            "(portico / Asio) | heap allocations per file (portico / Asio) | portico p50 / p99 ms per file | "
            "Asio p50 / p99 ms per file |",
            "|---|--:|--:|--:|---|--:|--:|--:|--:|"]
    for s in scenarios:
        if s["kind"] != "download":
            continue
        i = s["impls"]
        speed = [num(i[x]["bytes_per_s"] / mib) for x in ("portico", "asio")]
        calls = " / ".join(small(i[x]["win32_per_mib"]) for x in ("portico", "asio"))
        allocs = " / ".join(small(i[x]["allocs_per_msg"]) for x in ("portico", "asio"))
        times = [f"{num(i[x]['p50_us'] / 1000, 1)} / {num(i[x]['p99_us'] / 1000, 1)}" for x in ("portico", "asio")]
        rows.append(f"| {s['title']} | {speed[0]} | {speed[1]} | {ratio_cell(s.get('ratio_asio'))} "
                    f"| {verdict(s.get('ratio_asio'))} | {calls} | {allocs} | {times[0]} | {times[1]} |")
    return "\n".join(rows)


def download_calls_table(scenarios: list[dict], name: str) -> str:
    """The calls one file costs, by name, in the named download scenario."""
    s = next((x for x in scenarios if x["name"] == name), None)
    if s is None:
        return ""
    names = sorted(set(s["impls"]["portico"]["calls_per_msg"]) | set(s["impls"]["asio"]["calls_per_msg"]))
    rows = [f"Calls per file, {s['title']}:", "", "| call | portico | Asio |", "|---|--:|--:|"]
    for n in names:
        rows.append(f"| {n} | {small(s['impls']['portico']['calls_per_msg'].get(n))} "
                    f"| {small(s['impls']['asio']['calls_per_msg'].get(n))} |")
    return "\n".join(rows)


def probe_table(scenarios: list[dict]) -> str:
    rows = ["| | portico | Asio |", "|---|--:|--:|"]
    for s in scenarios:
        if s["kind"] != "probe":
            continue
        i = s["impls"]
        rows.append("| ping-pong p99 alone, µs | " + " | ".join(num(i[x]["p99_alone_us"]) for x in ("portico", "asio")) + " |")
        rows.append("| ping-pong p99 beside the downloads, µs | "
                    + " | ".join(num(i[x]["p99_loaded_us"]) for x in ("portico", "asio")) + " |")
        rows.append("| growth (median of the rounds' ratios) | "
                    + " | ".join(small(i[x]["growth"]) for x in ("portico", "asio")) + " |")
        rows.append("| downloads meanwhile, MiB/s | "
                    + " | ".join(num(i[x]["bytes_per_s"] / (1024 * 1024)) for x in ("portico", "asio")) + " |")
    return "\n".join(rows)


def calls_table(scenarios: list[dict], name: str) -> str:
    s = next((s for s in scenarios if s["name"] == name), None)
    if s is None:
        return "(scenario not run)"
    functions = sorted({f for impl in IMPLS for f in s["impls"][impl]["calls_per_msg"]})
    rows = [f"Per message in *{s['title']}*:", "", "| function | portico | Asio | floor |", "|---|--:|--:|--:|"]
    for f in functions:
        rows.append(f"| {f} | " + " | ".join(small(s["impls"][x]["calls_per_msg"].get(f, 0.0)) for x in IMPLS) + " |")
    return "\n".join(rows)


def summary_lines(scenarios: list[dict]) -> str:
    timed = [s for s in scenarios if s["kind"] == "throughput"]
    counts = {"ahead": 0, "equal": 0, "behind": 0}
    for s in timed:
        v = verdict(s.get("ratio_asio"))
        if v in counts:
            counts[v] += 1
    fewer = sum(1 for s in timed
                if s["impls"]["portico"]["win32_per_msg"] < s["impls"]["asio"]["win32_per_msg"])
    # Churn and the burst count connections: their allocations are per connection.
    steady = [s for s in timed if s["unit"] != "connections/s"]
    zero = sum(1 for s in steady if s["impls"]["portico"]["allocs_per_msg"] < 0.001)
    per_connection = "; ".join(
        f"{s['name']}: portico {small(s['impls']['portico']['allocs_per_msg'])}, "
        f"Asio {small(s['impls']['asio']['allocs_per_msg'])}" for s in timed if s["unit"] == "connections/s")
    floor = [s for s in timed if s["name"].startswith("pingpong-64") or s["name"] == "packets-1x16-plain"]
    floor_ratios = ", ".join(f"{s['name']} {s['ratio_raw']['median']:.2f}" for s in floor if s.get("ratio_raw"))
    return (f"- Against Asio, in {len(timed)} timed scenarios: portico ahead in {counts['ahead']}, "
            f"equal in {counts['equal']}, behind in {counts['behind']}.\n"
            f"- Fewer Win32 calls per message than Asio in {fewer} of {len(timed)}.\n"
            f"- Heap allocations per message below 0.001 in {zero} of the {len(steady)} scenarios on open "
            f"connections (the steady window of each trial); per connection where connections come and go "
            f"({per_connection}).\n"
            f"- Plain echo against the raw IOCP floor (portico / floor): {floor_ratios}.")


def goals_table(scenarios: list[dict]) -> str:
    """Issue 13's goals against this run: ping-pong jitter and cost at 64 and
    1,000 connections, and the heap of an idle connection at 10,000."""
    by_name = {s["name"]: s for s in scenarios}
    rows = ["| goal | scenario | portico | Asio | measured | met |", "|---|---|--:|--:|--:|---|"]

    def add(goal: str, name: str, mine: str, theirs: str, measured: str, met: bool | None) -> None:
        rows.append(f"| {goal} | {name} | {mine} | {theirs} | {measured} | "
                    f"{'–' if met is None else 'yes' if met else '**no**'} |")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    for name in ("pingpong-64x64", "pingpong-1000x64"):
        s = by_name.get(name)
        if s is None:
            add("ping-pong (not run)", name, "–", "–", "–", None)
            continue
        p, a = s["impls"]["portico"], s["impls"]["asio"]
        r = ratio(p.get("p99_us"), a.get("p99_us"))
        add("p99 <= 1.25x Asio's", name, num(p.get("p99_us")), num(a.get("p99_us")),
            f"{r:.2f}x" if r is not None else "–", None if r is None else r <= 1.25)
        t = s.get("ratio_asio")
        add("throughput >= 1.15x Asio's", name, num(p["msgs_per_s"]), num(a["msgs_per_s"]),
            ratio_cell(t), None if not t else t["median"] >= 1.15)
        r = ratio(p["win32_per_msg"], a["win32_per_msg"])
        add("Win32 calls per message <= 0.6x Asio's", name, small(p["win32_per_msg"]), small(a["win32_per_msg"]),
            f"{r:.2f}x" if r is not None else "–", None if r is None else r <= 0.6)
        add("0 allocations per message", name, small(p["allocs_per_msg"]), small(a["allocs_per_msg"]),
            small(p["allocs_per_msg"]), p["allocs_per_msg"] < 0.001)
    for name, what, limit in (("idle-packet-10000", "per packet_stream connection", 4096),
                              ("idle-10000", "per plain echo connection", 2048)):
        s = by_name.get(name)
        if s is None:
            add(f"heap {what} (not run)", name, "–", "–", "–", None)
            continue
        p, a = s["impls"]["portico"]["bytes_per_connection"], s["impls"]["asio"]["bytes_per_connection"]
        add(f"heap {what} <= {limit // 1024} KiB", name, num(p), num(a), num(p), p <= limit)
        add(f"heap {what} below Asio's", name, num(p), num(a), f"{p / a:.2f}x" if a else "–", p < a)
    return "\n".join(rows)


def environment_table(env: dict, scenarios: list[dict]) -> str:
    rows = ["| | |", "|---|---|"]
    for key, label in (("date", "run"), ("cpu", "CPU"), ("cpus", "CPUs"), ("kernel", "Linux"), ("wine", "Wine"),
                       ("compiler", "compiler"), ("asio", "Asio")):
        rows.append(f"| {label} | {env.get(key, '–')} |")
    rows.append(f"| cores | servers and wineserver on CPU {env['server_core']}, load client on CPU {env['client_core']} |")
    rows.append(f"| trials | {env['rounds']} rounds per scenario, {env['seconds']} s measured after "
                f"{env['warmup']} s warm-up |")
    # Scenarios measured later (run.py --merge), on the same machine.
    later: dict[str, list[str]] = {}
    for s in scenarios:
        e = s.get("environment")
        if e and e["date"] != env["date"]:
            note = (f"{e['date']}, {e['rounds']} rounds, {e['seconds']} s after {e['warmup']} s warm-up, "
                    f"{e['wine']}, {e['compiler']}")
            later.setdefault(note, []).append(s["name"])
    for note, names in later.items():
        rows.append(f"| run later | {', '.join(names)}: {note} |")
    return "\n".join(rows)


def steal_line(scenarios: list[dict]) -> str:
    values = [s["impls"][i]["steal_pct"] for s in scenarios for i in IMPLS if s["kind"] == "throughput"]
    if not values:
        return ""
    values.sort()
    return f"median {values[len(values) // 2]:.1f}%, worst {values[-1]:.1f}% (the medians of each server and scenario)."


def charts(scenarios: list[dict], images: Path) -> None:
    timed = [s for s in scenarios if s["kind"] == "throughput"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        with open(data / "ratios.dat", "w") as f:
            for s in timed:
                a, r = s.get("ratio_asio"), s.get("ratio_raw")
                floor_vs_asio = s["impls"]["raw"]["msgs_per_s"] / s["impls"]["asio"]["msgs_per_s"]
                f.write(f'"{s["name"]}" 1 {a["median"]} {a["low"]} {a["high"]} {floor_vs_asio}\n')
        with open(data / "latency.dat", "w") as f:
            for s in timed:
                if s["impls"]["portico"].get("p99_us") is None:
                    continue
                f.write(f'"{s["name"]}" ' + " ".join(str(s["impls"][i]["p99_us"]) for i in IMPLS) + "\n")
        with open(data / "calls.dat", "w") as f:
            for s in timed:
                f.write(f'"{s["name"]}" ' + " ".join(str(s["impls"][i]["win32_per_msg"]) for i in IMPLS) + "\n")
        images.mkdir(parents=True, exist_ok=True)
        timed_rtt = sum(1 for s in timed if s["impls"]["portico"].get("p99_us") is not None)
        subprocess.run(["gnuplot", "-e", f"data='{data}'; images='{images}'; n={len(timed)}; n_rtt={timed_rtt}",
                        str(ROOT / "bench/charts.gp")], check=True)


NATIVE_IMPLS = ("portico", "asio", "asio_uring", "raw_uring")
NATIVE_NAMES = {"portico": "portico (io_uring)", "asio": "Asio (epoll)", "asio_uring": "Asio (io_uring)",
                "raw_uring": "floor (io_uring)"}


def native_section(results: dict | None, command: str = "bash scripts/bench.sh --native") -> str:
    """The native run's tables: each server's rate, the ratios of portico to
    each other server, round-trip times and heap allocations per message;
    the idle and fan-out rows. No call counts: the native servers count none.
    A spinning run (its environment's idle_spin_us) says so in its first line."""
    if results is None:
        return f"Not measured yet: `{command}` runs it and rewrites this page."
    scenarios = results["scenarios"]
    env = results["environment"]
    spin = env.get("idle_spin_us") or 0
    spinning = (f" every server spins for up to {spin} µs when idle before it blocks (`--idle-spin {spin}`);"
                if spin else "")
    out = [f"Run {env['date']} on {env['cpu']} ({env['cpus']} CPUs), Linux {env['kernel']}, {env['compiler']}; "
           f"{env['rounds']} rounds of {env['seconds']} s after {env['warmup']} s warm-up;{spinning} servers on CPU "
           f"{env['server_core']}, load client on CPU {env['client_core']}.", ""]

    def cell(e: dict | None, key: str, digits: int = 0) -> str:
        return num(e.get(key), digits) if e else "–"

    others = [i for i in NATIVE_IMPLS if i != "portico"]
    header = " | ".join(NATIVE_NAMES[i] for i in NATIVE_IMPLS)
    ratios = " | ".join(f"portico / {NATIVE_NAMES[i]} [95% CI]" for i in others)
    rows = [f"| scenario | unit | {header} | {ratios} |", "|---|---|" + "--:|" * (len(NATIVE_IMPLS) + len(others))]
    for s in scenarios:
        if s["kind"] not in ("throughput", "fanout"):
            continue
        i = s["impls"]
        rows.append(f"| {s['title']} | {s['unit']} | " + " | ".join(cell(i.get(x), "msgs_per_s") for x in NATIVE_IMPLS)
                    + " | " + " | ".join(ratio_cell(s.get(f"ratio_{x}")) for x in others) + " |")
    out += rows + ["", "Round trips (one way for fan-out), µs, p50 / p99 / p99.9, and heap allocations per message:", ""]
    rows = [f"| scenario | {header} | allocations per message ({' / '.join(NATIVE_IMPLS)}) |",
            "|---|" + "--:|" * (len(NATIVE_IMPLS) + 1)]
    for s in scenarios:
        if s["kind"] not in ("throughput", "fanout"):
            continue
        i = s["impls"]
        times = [f"{cell(i.get(x), 'p50_us')} / {cell(i.get(x), 'p99_us')} / {cell(i.get(x), 'p999_us')}"
                 if x in i else "–" for x in NATIVE_IMPLS]
        allocs = " / ".join(small(i[x]["allocs_per_msg"]) if x in i else "–" for x in NATIVE_IMPLS)
        rows.append(f"| {s['title']} | " + " | ".join(times) + f" | {allocs} |")
    out += rows
    idle = [s for s in scenarios if s["kind"] == "idle"]
    if idle:
        out += ["", "Idle connections, per connection: heap bytes (the lean modes' pool apart) and resident "
                    "bytes of the server:", "",
                f"| scenario | {header} |", "|---|" + "--:|" * len(NATIVE_IMPLS)]
        for s in idle:
            i = s["impls"]
            out.append(f"| {s['title']} | " + " | ".join(
                f"{cell(i.get(x), 'bytes_per_connection')} / {cell(i.get(x), 'rss_per_connection')}" if x in i else "–"
                for x in NATIVE_IMPLS) + " |")
    counted = results.get("instructions_per_echo")
    if counted:
        per = counted["per_echo"]
        out += ["", f"User-space instructions per 64-byte echo, counted by callgrind (`bench/callgrind_echo.sh`, "
                    f"{counted['date']}; {counted['round_trips']:,} and {2 * counted['round_trips']:,} round trips, "
                    "one connection, one thread; the difference of the two runs' totals per round trip):", "",
                "| server | instructions per echo | portico / server |", "|---|--:|--:|"]
        for x in NATIVE_IMPLS:
            if x in per:
                mine = per.get("portico")
                out.append(f"| {NATIVE_NAMES[x]} | {num(per[x])} | "
                           f"{f'{mine / per[x]:.2f}' if mine and x != 'portico' else '–'} |")
    out += ["", f"The goals of issue 18, from these numbers{' (all servers spinning)' if spin else ''}:", "",
            native_goals(scenarios, counted)]
    return "\n".join(out)


def native_goals(scenarios: list[dict], counted: dict | None) -> str:
    """Issue 18's goals against the native run: the ping-pong and framed
    scenarios against both Asio backends and the floor, instructions per
    echo against Asio's, and no allocation per message."""
    rows = ["| goal | scenario | measured [95% CI] | met |", "|---|---|--:|---|"]

    def add(goal: str, name: str, measured: str, met: bool | None) -> None:
        rows.append(f"| {goal} | {name} | {measured} | {'–' if met is None else 'yes' if met else '**no**'} |")

    for s in scenarios:
        if s["kind"] != "throughput" or not s["name"].startswith(("pingpong-", "packets-")):
            continue
        for other, limit in (("asio", 1.1), ("asio_uring", 1.1), ("raw_uring", 0.9)):
            r = s.get(f"ratio_{other}")
            add(f"throughput >= {limit}x {NATIVE_NAMES[other]}", s["name"], ratio_cell(r),
                None if not r else r["median"] >= limit)
        allocs = s["impls"]["portico"]["allocs_per_msg"]
        add("0 allocations per message", s["name"], small(allocs), allocs < 0.001)
    if counted:
        per = counted["per_echo"]
        for other in ("asio", "asio_uring"):
            if "portico" in per and other in per:
                r = per["portico"] / per[other]
                add(f"instructions per echo <= 0.5x {NATIVE_NAMES[other]}", "callgrind echo", f"{r:.2f}x", r <= 0.5)
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "bench/results/latest.json")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    ap.add_argument("--native-results", type=Path, default=ROOT / "bench/results/native.json")
    ap.add_argument("--native-spin-results", type=Path, default=ROOT / "bench/results/native-spin.json")
    args = ap.parse_args()
    native = json.loads(args.native_results.read_text()) if args.native_results.exists() else None
    native_spin = (json.loads(args.native_spin_results.read_text()) if args.native_spin_results.exists()
                   else None)
    results = json.loads(args.results.read_text())
    scenarios = results["scenarios"]
    charts(scenarios, args.docs / "images")
    page = (ROOT / "bench/benchmarks.md.in").read_text()
    for marker, text in {
        "@ENVIRONMENT@": environment_table(results["environment"], scenarios),
        "@SUMMARY@": summary_lines(scenarios) + fanout_summary(scenarios),
        "@FANOUT@": fanout_table(scenarios),
        "@FANOUT_COUNTED@": fanout_counted_table(scenarios),
        "@THROUGHPUT@": throughput_table(scenarios),
        "@LATENCY@": latency_table(scenarios),
        "@COUNTED@": counted_table(scenarios),
        "@CALLS@": calls_table(scenarios, "pingpong-64x64") + "\n\n" + calls_table(scenarios, "packets-1x16"),
        "@IDLE@": idle_table(scenarios),
        "@GOALS@": goals_table(scenarios),
        "@DOWNLOAD@": download_table(scenarios),
        "@DOWNLOAD_CALLS@": download_calls_table(scenarios, "download-1x64m") + "\n\n"
        + download_calls_table(scenarios, "download-16x64k"),
        "@DOWNLOAD_PROBE@": probe_table(scenarios),
        "@STEAL@": steal_line(scenarios),
        "@NATIVE@": native_section(native),
        "@NATIVE_SPIN@": native_section(native_spin, "bash scripts/bench.sh --native --idle-spin 50 "
                                                     "--results bench/results/native-spin.json"),
    }.items():
        page = page.replace(marker, text)
    (args.docs / "benchmarks.md").write_text(page)
    print(f"wrote {args.docs / 'benchmarks.md'} and the charts in {args.docs / 'images'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
