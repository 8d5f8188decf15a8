"""Benchmark runner: runs registered benchmarks, prints a table, writes results as JSON.

    python -m jobs.bench [--only NAME ...] [--out build/bench/results.json] [--quick]

A benchmark is a function `run(quick: bool) -> list[dict]`; each dict is one result row with
keys benchmark, config, device, metric, value (a number, or None for a row that only carries a
note) and note. Register a new one with one line in BENCHMARKS.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from jobs import bench_end_to_end, bench_sonar, bench_two_tower

log = logging.getLogger("jobs.bench")

BENCHMARKS: dict[str, Callable[[bool], list[dict]]] = {
    bench_two_tower.NAME: bench_two_tower.run,
    bench_sonar.NAME: bench_sonar.run,
    bench_end_to_end.NAME: bench_end_to_end.run,
}

ROW_KEYS = ("benchmark", "config", "device", "metric", "value", "note")
COLUMNS = ("benchmark", "config", "device", "metric", "value")


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "device": torch.cuda.get_device_name() if cuda else cpu_name(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # Other work on the machine skews CPU timings: record how busy it was.
        "load_avg_1m": os.getloadavg()[0],
        "platform": platform.platform(),
    }


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}"


def format_table(rows: list[dict]) -> str:
    """Fixed-width columns, values right-aligned; a row's note is numbered after its value and
    listed under the table."""
    cells = [[str(r[c]) for c in COLUMNS[:-1]] + [format_value(r["value"])] for r in rows]
    widths = [max(len(c), *(len(cell[i]) for cell in cells)) for i, c in enumerate(COLUMNS)]

    def line(parts: list[str]) -> str:
        return "  ".join([p.ljust(w) for p, w in zip(parts[:-1], widths)] +
                         [parts[-1].rjust(widths[-1])])

    out = [line(list(COLUMNS)), line(["-" * w for w in widths])]
    notes: list[str] = []
    for cell, r in zip(cells, rows):
        if r["note"]:
            notes.append(r["note"])
        out.append(line(cell) + (f"  [{len(notes)}]" if r["note"] else ""))
    return "\n".join(out + [f"[{i}] {n}" for i, n in enumerate(notes, 1)])


def run(names: list[str], quick: bool, out: Path) -> dict:
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    results = {"environment": environment(), "quick": quick, "benchmarks": {}, "results": []}
    for name in names:
        log.info("benchmark %s (quick=%s)", name, quick)
        t0 = time.perf_counter()
        rows = BENCHMARKS[name](quick)
        for r in rows:
            if set(r) != set(ROW_KEYS):
                raise ValueError(f"{name} returned a row with keys {sorted(r)}, not {ROW_KEYS}")
        results["benchmarks"][name] = {"seconds": round(time.perf_counter() - t0, 2),
                                       "load_avg_1m_end": os.getloadavg()[0]}
        results["results"] += rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log.info("wrote %s", out)
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", default=list(BENCHMARKS),
                        help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})")
    parser.add_argument("--out", type=Path, default=Path("build/bench/results.json"))
    parser.add_argument("--quick", action="store_true",
                        help="a few timed steps; on CPU no torch.compile")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = run(args.only, args.quick, args.out)
    env = results["environment"]
    # The table is this command's output, so it goes to stdout rather than the log.
    print(f"{env['date']}  torch {env['torch']}  {env['device']}  {env['cpu_count']} CPUs")
    print(format_table(results["results"]))
    return results


if __name__ == "__main__":
    main()
