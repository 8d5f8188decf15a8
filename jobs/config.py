"""YAML -> dataclass configs, with `key.sub=value` overrides from the command line.

Unknown keys are an error (a typo in a config must not be silently ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    if not isinstance(data, dict):
        raise ValueError(f"config {where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"config {where or cls.__name__}: unknown keys {unknown}; "
                         f"known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        target = hint if dataclasses.is_dataclass(hint) else (inner[0] if inner else None)
        if target is not None and isinstance(value, dict):
            value = from_dict(target, value, f"{where}.{key}" if where else key)
        elif typing.get_origin(hint) is list and value is not None:
            (item,) = typing.get_args(hint) or (None,)
            if dataclasses.is_dataclass(item):
                value = [from_dict(item, v, f"{where}.{key}[{i}]") for i, v in enumerate(value)]
        kwargs[key] = value
    return cls(**kwargs)


def apply_override(data: dict[str, Any], override: str) -> None:
    """`a.b=3` sets data["a"]["b"] = 3 (the value parsed as YAML)."""
    key, sep, value = override.partition("=")
    if not sep:
        raise ValueError(f"override {override!r} is not of the form key=value")
    *path, last = key.split(".")
    node = data
    for part in path:
        node = node.setdefault(part, {})
    node[last] = yaml.safe_load(value)


def load(cls: type[T], path: str | Path, overrides: list[str] = ()) -> T:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    for o in overrides:
        apply_override(data, o)
    return from_dict(cls, data, path.name)


def cli(description: str, default_config: str) -> argparse.Namespace:
    """The command line every job shares: --config FILE and KEY=VALUE overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=default_config, help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=10")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args


def absolute(path: str) -> str:
    """Local paths become absolute (Ray workers may run elsewhere); URIs stay as they are."""
    return path if "://" in path else str(Path(path).absolute())
