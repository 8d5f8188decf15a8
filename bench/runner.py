"""The benchmark runner: runs registered benchmarks, prints a table, writes results as JSON
(`python -m jobs.bench`).

A benchmark is a function `run(quick: bool) -> list[dict]`; each dict is one result row with
keys benchmark, config, device, metric, value (a number, or None for a row that only carries a
note) and note. Register a new one with one line in BENCHMARKS.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from bench import end_to_end, serving, sonar_encoder, two_tower

log = logging.getLogger(__name__)

BENCHMARKS: dict[str, Callable[[bool], list[dict]]] = {
    two_tower.NAME: two_tower.run,
    sonar_encoder.NAME: sonar_encoder.run,
    end_to_end.NAME: end_to_end.run,
    serving.NAME: serving.run,
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
