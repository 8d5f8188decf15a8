"""Benchmarks: run them, print a table, write results as JSON (bench/runner.py).

    python -m jobs.bench [--only NAME ...] [--out build/bench/results.json] [--quick]
"""

import argparse
from pathlib import Path

from bench.runner import BENCHMARKS, format_table, run
from jobkit.cli import LEVELS, setup_logging


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", default=list(BENCHMARKS),
                        help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})")
    parser.add_argument("--out", type=Path, default=Path("build/bench/results.json"))
    parser.add_argument("--quick", action="store_true",
                        help="a few timed steps; on CPU no torch.compile")
    parser.add_argument("--log-level", type=str.upper, choices=LEVELS, default=None)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    results = run(args.only, args.quick, args.out)
    env = results["environment"]
    # The table is this command's output, so it goes to stdout rather than the log.
    print(f"{env['date']}  torch {env['torch']}  {env['device']}  {env['cpu_count']} CPUs")
    print(format_table(results["results"]))
    return results


if __name__ == "__main__":
    main()
