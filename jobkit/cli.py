"""The command line every job shares:

    python -m jobs.X [--config FILE] [KEY=VALUE ...] [--print-config] [--log-level LEVEL]

`--help` lists every key of the job's config with its type, default and doc (read from the
config classes, so it cannot drift from them); `--print-config` prints the effective config
(file, includes and overrides merged, checked, paths absolute) as YAML and exits; loading it
again gives the same config. A bad config ends the job with exit status 2 and a message naming
the key, before Ray or any worker starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from typing import Callable, TypeVar

from jobkit import config as config_io

T = TypeVar("T")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger(__name__)


def setup_logging(level: str | None = None) -> str:
    """Configure this process's logging at `level` (default: $MIMIR_LOG_LEVEL or INFO) and
    export it, so that the Ray workers this job starts log at the same level."""
    level = (level or os.environ.get("MIMIR_LOG_LEVEL") or "INFO").upper()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    os.environ["MIMIR_LOG_LEVEL"] = level
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    return level


def key_table(cls: type) -> str:
    rows = config_io.describe(cls)
    width = max(len(k) for k, *_ in rows)
    lines = []
    for key, kind, default, doc in rows:
        head = f"  {key:<{width}}  {kind} = {default}"
        lines.append(head)
        if doc:
            lines += textwrap.wrap(doc, 96, initial_indent=" " * (width + 4),
                                   subsequent_indent=" " * (width + 4))
    return "\n".join(lines)


def parse(cls: type[T], doc: str, default_config: str, argv: list[str] | None = None,
          check: Callable[[T], None] | None = None, flags: dict[str, str] | None = None) -> T:
    """The job's config from the command line (see the module docstring); `check` is the
    job's own check of it, whose ValueError ends the job like a config error. `flags` maps
    option names to config keys (`{"--checkpoint": "checkpoint"}`): `--checkpoint URI` is
    `checkpoint=URI`, applied after the KEY=VALUE overrides."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    parser = argparse.ArgumentParser(
        prog=f"python -m {spec.name}" if spec else None, description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"config keys (set in the YAML file or as KEY=VALUE):\n{key_table(cls)}")
    parser.add_argument("--config", default=default_config, help="YAML config file "
                        f"(default {default_config})")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. train.steps=10")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective config as YAML and exit")
    parser.add_argument("--log-level", type=str.upper, choices=LEVELS, default=None,
                        help="log level of the job and its Ray workers (default INFO)")
    for option, key in (flags or {}).items():
        parser.add_argument(option, dest=f"flag:{key}", metavar=key.split(".")[-1].upper(),
                            help=f"the same as {key}=VALUE")
    args = parser.parse_args(argv)
    for option, key in (flags or {}).items():
        value = getattr(args, f"flag:{key}")
        if value is not None:  # as a YAML string: a path or code is never read as a number
            args.overrides.append(f"{key}={json.dumps(value)}")
    setup_logging(args.log_level)
    try:
        cfg = config_io.load(cls, args.config, args.overrides)
        if check is not None:
            check(cfg)
    except (config_io.ConfigError, ValueError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    if args.print_config:
        sys.stdout.write(config_io.to_yaml(cfg))
        sys.exit(0)
    log.info("effective config (%s):\n%s", args.config, config_io.to_yaml(cfg).rstrip())
    return cfg
