#!/usr/bin/env python3
"""Prints the docs/BENCHMARKS.md tables from a bench/run.sh result folder.

Usage: bench/summarize.py RESULT_DIR

Reads RESULT_DIR/<bench>-<system>.json (written by terminus-load), the
servers' logs and machine.txt, and prints:

1. issue 12's Targets table: one row per target, each system's value, the
   target, and whether Terminus meets it;
2. the detailed table: one Markdown row per measure with the factor by which
   Terminus is better than the better peer (> 1: Terminus is better).

A cell says "not run" when its report is missing and marks "(FAIL)" when the
run's own checks failed (reclaim, connection or operation errors); the
number is what was measured anyway.
"""

import datetime
import json
import os
import re
import sys

SYSTEMS = ["terminus", "async-graphql", "node"]
PEERS = SYSTEMS[1:]
NAMES = {"terminus": "Terminus", "async-graphql": "async-graphql", "node": "Node graphql-ws"}


def load(folder, bench, system):
    path = os.path.join(folder, f"{bench}-{system}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def dig(report, *keys):
    """The value at `keys` in `report`, or what a function given as the
    only key computes from it."""
    if keys and callable(keys[0]):
        return keys[0](report)
    value = report
    for key in keys:
        if value is None:
            return None
        value = value.get(key)
    return value


STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def log_count(folder, bench, system, pattern, before_ms=None):
    """Lines of a server's log (and its upstream's) matching pattern; with
    before_ms, only those stamped before that Unix time in milliseconds."""
    count = 0
    found = False
    for suffix in ("server.log", "server.log.upstream"):
        path = os.path.join(folder, f"{bench}-{system}.{suffix}")
        if os.path.exists(path):
            found = True
            with open(path, errors="replace") as f:
                for line in f:
                    if not re.search(pattern, line):
                        continue
                    if before_ms is not None:
                        stamp = STAMP.search(line)
                        if stamp is None:
                            continue
                        at = datetime.datetime.fromisoformat(stamp.group(1)).replace(
                            tzinfo=datetime.timezone.utc)
                        if at.timestamp() * 1000 >= before_ms:
                            continue
                    count += 1
    return count if found else None


def grpc_lost(folder, bench, report):
    """Terminus's gRPC connections lost before the clients were dropped
    (the gateway logs "gRPC connection ended" for each)."""
    return log_count(folder, bench, "terminus", r"gRPC connection ended",
                     dig(report, "drop_at_unix_ms"))


def fmt_num(value, fmt):
    return "n/a" if value is None else fmt.format(value)


def better(values, higher):
    known = [v for v in values if v is not None]
    if not known:
        return None
    return max(known) if higher else min(known)


def ratio(mine, best, higher):
    if mine is None or best is None:
        return None
    if higher:
        return mine / best if best > 0 else None
    return best / mine if mine > 0 else None


# --- the Targets table of issue 12 ----------------------------------------


def cell(report, text):
    if report is None:
        return "not run"
    if not report.get("passed", False):
        return text + " (FAIL)"
    return text


def errors_text(report):
    codes = dig(report, "errors", "codes") or {}
    other = dig(report, "errors", "operation_errors") or 0
    if not codes:
        return f"{other} op errors"
    return ", ".join(f"{code} {n:,}" for code, n in sorted(codes.items()))


def lost_text(folder, bench, system, report):
    closes = dig(report, "errors", "server_closes") or 0
    failures = dig(report, "errors", "connect_failures") or 0
    text = f"{closes} conns closed by the server, {failures} connect failures"
    if system == "terminus":
        grpc = grpc_lost(folder, bench, report)
        if grpc is not None:
            text += f", {grpc} gRPC connections lost before the drop"
    return text


def shared_last(report):
    """Last value of the shared-streams series after the reclaim."""
    for series in dig(report, "reclaim", "series") or []:
        if "shared_streams" in series["name"]:
            return series["last"]
    return None


def targets(folder):
    rows = []

    def get(bench, *path):
        reports = {s: load(folder, bench, s) for s in SYSTEMS}
        values = {s: dig(reports[s], *path) if reports[s] else None for s in SYSTEMS}
        return reports, values

    # 1. idle RSS
    reports, values = get("memory", "memory", "rss_per_connection_bytes")
    mine = values["terminus"]
    rows.append((
        "RSS per idle initialised connection, 10,000 connections",
        {s: cell(reports[s], fmt_num(values[s], "{:,.0f} B")) for s in SYSTEMS},
        "at most 4 KiB",
        None if mine is None else ("met" if mine <= 4096 else "missed"),
    ))
    # 2. RSS with one ticks subscription
    reports, values = get("subscribed", "memory", "rss_per_connection_bytes")
    mine = values["terminus"]
    best = better([values[s] for s in PEERS], False)
    rows.append((
        "RSS per connection with one `ticks` subscription, 10,000 connections",
        {s: cell(reports[s], fmt_num(values[s], "{:,.0f} B")) for s in SYSTEMS},
        "at most half of the best peer",
        None if mine is None or best is None else
        f"{'met' if mine <= best / 2 else 'missed'} ({mine / best:.2f}x the best peer)",
    ))
    # 3. shared clock
    reports, values = get("clock", "delivery", "frames_per_s")
    mine = values["terminus"]
    best = better([values[s] for s in PEERS], True)
    r = ratio(mine, best, True)
    rows.append((
        "`clock(everyMs: 20)` shared by 10,000 connections: delivered/s (500,000/s asked)",
        {s: cell(reports[s], fmt_num(values[s], "{:,.0f}/s")) for s in SYSTEMS},
        "at least 2x the better peer",
        None if r is None else f"{'met' if r >= 2 else 'missed'} ({r:.2f}x)",
    ))
    # 4. per-subscriber ticks
    reports, values = get("frames", "delivery", "frames_per_s")
    mine = values["terminus"]
    best = better([values[s] for s in PEERS], True)
    cells = {}
    for s in SYSTEMS:
        if reports[s] is None:
            cells[s] = "not run"
        else:
            cells[s] = cell(reports[s], fmt_num(values[s], "{:,.0f}/s")) + "; " + \
                errors_text(reports[s]) + "; " + lost_text(folder, "frames", s, reports[s])
    verdict = None
    if mine is not None and best is not None:
        t = reports["terminus"]
        codes = dig(t, "errors", "codes") or {}
        lost = (dig(t, "errors", "server_closes") or 0) + \
            (grpc_lost(folder, "frames", t) or 0)
        ok = lost == 0 and codes.get("UPSTREAM_UNAVAILABLE", 0) == 0 and mine >= best
        verdict = f"{'met' if ok else 'missed'} ({mine / best:.2f}x the better peer)" if best > 0 \
            else ("met" if ok else "missed")
    rows.append((
        "`ticks(everyMs: 20)` on 10,000 connections: delivered/s; errors; connections lost",
        cells,
        "no connection lost, no `UPSTREAM_UNAVAILABLE`, at least the better peer's rate",
        verdict,
    ))
    # 5. p99 lateness
    reports, values = get("latency", "delivery", "lateness", "p99_ms")
    mine = values["terminus"]
    rows.append((
        "p99 lateness, 1,000 x `ticks(everyMs: 100)`",
        {s: cell(reports[s], fmt_num(values[s], "{:.2f} ms")) for s in SYSTEMS},
        "at most 5 ms",
        None if mine is None else ("met" if mine <= 5 else "missed"),
    ))
    # 6. churn
    reports, values = get("churn", "delivery", "cycles_per_s")
    mine = values["terminus"]
    best = better([values[s] for s in PEERS], True)
    r = ratio(mine, best, True)
    rows.append((
        "subscribe-then-complete churn (100 connections x 10 slots)",
        {s: cell(reports[s], fmt_num(values[s], "{:,.0f}/s")) for s in SYSTEMS},
        "at least 1x the better peer",
        None if r is None else f"{'met' if r >= 1 else 'missed'} ({r:.2f}x)",
    ))
    # 7. reclaim with shared fields
    reports, values = get("reclaim-shared", "reclaim", "seconds")
    cells = {}
    for s in SYSTEMS:
        rep = reports[s]
        if rep is None:
            cells[s] = "not run"
            continue
        text = fmt_num(values[s], "{:.3f} s") if dig(rep, "reclaim", "reclaimed") \
            else f"not back within {dig(rep, 'reclaim', 'timeout_s')} s"
        shared = shared_last(rep)
        if shared is not None:
            text += f", shared streams {shared:.0f}"
        cells[s] = cell(rep, text)
    mine = values["terminus"]
    t = reports["terminus"]
    verdict = None
    if t is not None:
        shared = shared_last(t)
        ok = bool(dig(t, "reclaim", "reclaimed")) and mine is not None and mine <= 0.5 \
            and shared == 0
        verdict = "met" if ok else "missed"
        if shared is None:
            verdict += " (no shared-streams series in /metrics)"
    rows.append((
        "reclaim after 10,000 subscribed clients (half on shared fields) drop",
        cells,
        "at most 0.5 s, every series to baseline, shared streams 0",
        verdict,
    ))

    print("| measure | " + " | ".join(NAMES[s] for s in SYSTEMS) + " | target | Terminus |")
    print("| --- | " + " | ".join("---:" for _ in SYSTEMS) + " | --- | --- |")
    for label, cells, target, verdict in rows:
        print(f"| {label} | " + " | ".join(cells[s] for s in SYSTEMS)
              + f" | {target} | {verdict or 'n/a'} |")


# --- the detailed table ---------------------------------------------------

def upstream_ms_per_1k_cycles(report):
    """The second --pid's CPU (the demo upstream) per 1,000 churn cycles."""
    each = dig(report, "cpu", "server_each_s") or []
    cycles = dig(report, "delivery", "cycles")
    if len(each) < 2 or each[1] is None or not cycles:
        return None
    return each[1] * 1e6 / cycles


# (label, bench, path into the report or a function of it, higher is
# better, format)
MEASURES = [
    ("RSS per idle initialised connection at 10,000 connections (bytes)",
     "memory", ("memory", "rss_per_connection_bytes"), False, "{:,.0f}"),
    ("RSS per connection, 10,000 x 1 `ticks` subscription (bytes)",
     "subscribed", ("memory", "rss_per_connection_bytes"), False, "{:,.0f}"),
    ("delivered results/s, 10,000 x shared `clock(everyMs: 20)`",
     "clock", ("delivery", "frames_per_s"), True, "{:,.0f}"),
    ("server CPU ms per 1,000 results (same run)",
     "clock", ("cpu", "server_ms_per_1k_frames"), False, "{:.1f}"),
    ("p99 lateness vs schedule, shared clock (ms)",
     "clock", ("delivery", "lateness", "p99_ms"), False, "{:.2f}"),
    ("delivered results/s with 10,000 subscriptions",
     "frames", ("delivery", "frames_per_s"), True, "{:,.0f}"),
    ("server CPU ms per 1,000 results (same run)",
     "frames", ("cpu", "server_ms_per_1k_frames"), False, "{:.1f}"),
    ("delivered results/s with 10,000 subscriptions at 10/s each",
     "frames100", ("delivery", "frames_per_s"), True, "{:,.0f}"),
    ("server CPU ms per 1,000 results (same run)",
     "frames100", ("cpu", "server_ms_per_1k_frames"), False, "{:.1f}"),
    ("p99 lateness vs schedule, 1,000 subs x 10/s (ms)",
     "latency", ("delivery", "lateness", "p99_ms"), False, "{:.2f}"),
    ("p99 gap excess, 1,000 subs x 10/s (ms)",
     "latency", ("delivery", "gap_excess", "p99_ms"), False, "{:.2f}"),
    ("time to reclaim after 10,000 subscribed clients (half shared) drop (s)",
     "reclaim-shared", ("reclaim", "seconds"), False, "{:.3f}"),
    ("reclaim measured from the load generator's last socket close (s)",
     "reclaim-shared", ("reclaim", "seconds_after_sockets_closed"), False, "{:.3f}"),
    ("time to reclaim after 10,000 `ticks` clients drop (s)",
     "reclaim", ("reclaim", "seconds"), False, "{:.3f}"),
    ("subscribe-then-complete cycles/s (100 conns x 10 slots)",
     "churn", ("delivery", "cycles_per_s"), True, "{:,.0f}"),
    ("server CPU ms per 1,000 churn cycles",
     "churn", ("cpu", "server_ms_per_1k_frames"), False, "{:.1f}"),
    ("of which the upstream's (Terminus: `terminus demo-upstream`; the peers have none)",
     "churn", (upstream_ms_per_1k_cycles,), False, "{:.1f}"),
]


def detailed(folder):
    print("| measure | " + " | ".join(NAMES[s] for s in SYSTEMS) + " | Terminus vs better peer |")
    print("| --- | " + " | ".join("---:" for _ in SYSTEMS) + " | ---: |")
    for label, bench, path, higher, fmt in MEASURES:
        reports = {s: load(folder, bench, s) for s in SYSTEMS}
        if all(r is None for r in reports.values()):
            continue
        values = {s: dig(reports[s], *path) if reports[s] else None for s in SYSTEMS}
        cells = []
        for s in SYSTEMS:
            if reports[s] is None:
                cells.append("not run")
            elif values[s] is None:
                cells.append("n/a")
            else:
                cells.append(cell(reports[s], fmt.format(values[s])))
        r = ratio(values["terminus"], better([values[s] for s in PEERS], higher), higher)
        print(f"| {label} | " + " | ".join(cells) + f" | {'n/a' if r is None else f'{r:.2f}x'} |")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    folder = sys.argv[1]
    machine = os.path.join(folder, "machine.txt")
    if os.path.exists(machine):
        with open(machine) as f:
            print(f.read().rstrip())
        print()
    targets(folder)
    print()
    detailed(folder)


if __name__ == "__main__":
    main()
