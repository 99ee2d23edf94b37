#!/usr/bin/env python3
"""Prints the docs/BENCHMARKS.md table from a bench/run.sh result folder.

Usage: bench/summarize.py RESULT_DIR

Reads RESULT_DIR/<bench>-<system>.json (written by terminus-load) and prints
one Markdown row per measure: each system's value and the factor by which
Terminus is better than the better peer (> 1: Terminus is better).
"""

import json
import os
import sys

SYSTEMS = ["terminus", "async-graphql", "node"]


def load(folder, bench, system):
    path = os.path.join(folder, f"{bench}-{system}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def dig(report, *keys):
    value = report
    for key in keys:
        if value is None:
            return None
        value = value.get(key)
    return value


# (label, bench, path into the report, higher is better, format)
MEASURES = [
    ("RSS per idle initialised connection at 10,000 connections (bytes)",
     "memory", ("memory", "rss_per_connection_bytes"), False, "{:,.0f}"),
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
    ("time to reclaim after 10,000 subscribed clients drop (s)",
     "reclaim", ("reclaim", "seconds"), False, "{:.3f}"),
    ("subscribe-then-complete cycles/s (100 conns x 10 slots)",
     "churn", ("delivery", "cycles_per_s"), True, "{:,.0f}"),
]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    folder = sys.argv[1]
    print("| measure | " + " | ".join(SYSTEMS) + " | Terminus vs better peer |")
    print("| --- | " + " | ".join("---:" for _ in SYSTEMS) + " | ---: |")
    for label, bench, path, higher, fmt in MEASURES:
        values = {}
        cells = []
        for system in SYSTEMS:
            report = load(folder, bench, system)
            value = dig(report, *path) if report else None
            values[system] = value
            if report is None:
                cells.append("not run")
            elif value is None:
                cells.append("n/a")
            else:
                cell = fmt.format(value)
                if not report.get("passed", False):
                    cell += " (FAIL)"
                cells.append(cell)
        peers = [values[s] for s in SYSTEMS[1:] if values[s] is not None]
        ratio = "n/a"
        mine = values["terminus"]
        if mine is not None and peers:
            best = max(peers) if higher else min(peers)
            if higher and best > 0:
                ratio = f"{mine / best:.2f}x"
            elif not higher and mine > 0:
                ratio = f"{best / mine:.2f}x"
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
