#!/usr/bin/env python3
"""The performance page's table and chart, from a side-by-side summary.

    scripts/perf-chart.py SUMMARY.tsv --svg OUT.svg     # write the chart
    scripts/perf-chart.py SUMMARY.tsv --table           # print the Markdown table
    scripts/perf-chart.py SUMMARY.tsv --check OUT.svg   # exit 1 if OUT.svg is stale

SUMMARY.tsv is what `scripts/sidebyside.sh` writes: one row per round, system and
workload (`round<TAB>system<TAB>workload<TAB>result...`). Each figure is the median of
the rounds. Only the standard library: the test suite runs `--check` so the chart in
the book always matches the summary checked in beside it.
"""

import re
import statistics
import sys
from html import escape

# (key, title, unit) in page order.
WORKLOADS = [
    ("w1", "W1 bulk append, 1,000-event requests", "events/s"),
    ("w2", "W2 single appends with expected version, 8 clients", "events/s"),
    ("w3", "W3 W2 + read-your-writes of balances", "events/s"),
    ("w4", "W4 rebuild balances from 1M events", "events/s"),
    ("w5", "W5 point reads of balances, 8 clients", "reads/s"),
]

# (system in the summary, label, colour), in bar order.
SYSTEMS = [
    ("datamesh-wire-unix", "DataMesh, wire protocol, Unix socket", "#1f6feb"),
    ("datamesh-wire-tcp", "DataMesh, wire protocol, TCP", "#4c8ef7"),
    ("datamesh-unix", "DataMesh, gRPC, Unix socket", "#79a8f9"),
    ("datamesh-tcp", "DataMesh, gRPC, TCP", "#a8c7fb"),
    ("datamesh-node", "DataMesh node (deploy, fold, caught up)", "#1f6feb"),
    ("postgres", "PostgreSQL 15 (pgbench, Unix socket)", "#8a8a8a"),
    ("redis-always", "Redis 7, AOF always (Unix socket)", "#c0c0c0"),
    ("redis-get", "Redis 7 GET of a key (reference, not a peer)", "#e0e0e0"),
]
PEERS = {"postgres", "redis-always"}
# Shown for scale, never compared with: not a peer on that workload.
REFERENCES = {"redis-get"}

PEER_WORKLOADS = {
    "W1_bulk_append": "w1",
    "W2_occ_append": "w2",
    "W2_single_append": "w2",
    "W3_inline_projection": "w3",
    "W4_rebuild": "w4",
    "W5_point_read": "w5",
}


def parse(path):
    """{(workload, system): [(throughput, p99 or None), ...]} from a summary file."""
    figures = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 4:
                continue
            system, workload, text = fields[1], fields[2], " ".join(fields[3:])
            workload = PEER_WORKLOADS.get(workload, workload)
            if system.startswith("datamesh"):
                m = re.search(r"= ([0-9.]+) (?:events|reads)/s", text)
            else:
                m = re.match(r"\s*([0-9.]+) ev/s", text)
            if not m:
                continue
            p99 = re.search(r"p99 ([0-9.]+) ms", text)
            figures.setdefault((workload, system), []).append(
                (float(m.group(1)), float(p99.group(1)) if p99 else None)
            )
    return figures


def medians(figures):
    """{(workload, system): (median throughput, median p99 or None)}."""
    out = {}
    for key, runs in figures.items():
        p99s = [p for _, p in runs if p is not None]
        out[key] = (
            statistics.median(t for t, _ in runs),
            statistics.median(p99s) if p99s else None,
        )
    return out


def best_peer(m, workload):
    peers = [m[(workload, s)][0] for s in PEERS if (workload, s) in m]
    return max(peers) if peers else None


def human(n):
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def table(m):
    lines = [
        "| workload | system | throughput | p99 | vs best peer |",
        "|---|---|---:|---:|---:|",
    ]
    for key, title, unit in WORKLOADS:
        peer = best_peer(m, key)
        for system, label, _ in SYSTEMS:
            if (key, system) not in m:
                continue
            value, p99 = m[(key, system)]
            compared = peer and system not in PEERS | REFERENCES
            ratio = f"{value / peer:.2f}x" if compared else ""
            p99_text = f"{p99:.2f} ms" if p99 is not None else ""
            lines.append(
                f"| {title} | {label} | {human(value)} {unit} | {p99_text} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def svg(m):
    width, label_w, bar_w, row_h, gap = 960, 330, 430, 20, 34
    rows = []
    y = 20
    for key, title, unit in WORKLOADS:
        present = [(s, l, c) for s, l, c in SYSTEMS if (key, s) in m]
        if not present:
            continue
        top = max(m[(key, s)][0] for s, _, _ in present)
        peer = best_peer(m, key)
        rows.append(
            f'<text x="10" y="{y + 14}" font-weight="bold">{escape(title)} ({unit})</text>'
        )
        y += 22
        for system, label, colour in present:
            value = m[(key, system)][0]
            length = max(1, round(bar_w * value / top))
            ratio = ""
            if peer and system not in PEERS | REFERENCES:
                ratio = f"  {value / peer:.2f}x best peer"
            rows.append(f'<text x="10" y="{y + 14}">{escape(label)}</text>')
            rows.append(
                f'<rect x="{label_w}" y="{y + 3}" width="{length}" height="{row_h - 6}" fill="{colour}"/>'
            )
            rows.append(
                f'<text x="{label_w + length + 6}" y="{y + 14}">{human(value)}{ratio}</text>'
            )
            y += row_h
        y += gap - row_h
    height = y + 10
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">\n'
        f'<rect width="{width}" height="{height}" fill="white"/>\n'
    )
    return head + "\n".join(rows) + "\n</svg>\n"


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    m = medians(parse(argv[1]))
    if argv[2] == "--table":
        sys.stdout.write(table(m))
        return 0
    if argv[2] == "--svg" and len(argv) == 4:
        with open(argv[3], "w", encoding="utf-8") as f:
            f.write(svg(m))
        return 0
    if argv[2] == "--check" and len(argv) == 4:
        with open(argv[3], encoding="utf-8") as f:
            if f.read() != svg(m):
                print(
                    f"{argv[3]} does not match {argv[1]}: run scripts/perf-chart.py "
                    f"{argv[1]} --svg {argv[3]}",
                    file=sys.stderr,
                )
                return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
