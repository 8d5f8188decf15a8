"""Job configs: dataclasses loaded from YAML, with includes, `key.sub=value` overrides, types
checked at load, and every data location made absolute in one pass.

- `include: FILE` or `include: [FILE, ...]` (paths relative to the including file) merges
  those files first, in order, then the file's own keys on top: mappings merge key by key,
  anything else (lists included) is replaced. A recipe states only what differs from its base.
- Unknown keys are errors, with the closest known key suggested.
- Values are checked against the fields' types and coerced where that is unambiguous (`"8"`
  -> 8, `"1e-4"` -> 0.0001 for a float; YAML 1.1 reads 1e-4 as a string); `Literal` fields
  are enumerations. This is pydantic's validation (installed with Ray) applied to the plain
  dataclasses, so model code and the workers' configs stay free of it.
- Fields typed `storage.Input` / `storage.Output` name data: their local relative paths are
  made absolute in one pass (storage.paths.absolute_paths; Ray workers may run elsewhere).

Errors name the file, the key, the value and what was expected, before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from storage.paths import Location, absolute_paths

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot be used: the message says which key and what to do."""


# ---- reading YAML ---------------------------------------------------------------------------

def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of a YAML config file with its includes merged in."""
    path = Path(path).absolute()
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path in _seen:
        raise ConfigError(f"config file {path} includes itself (through {_seen[-1]})")
    try:
        with open(path, encoding="utf-8") as f:  # a stream, so the error's mark names the file
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys, got {data!r}")
    includes = data.pop("include", [])
    merged: dict[str, Any] = {}
    for inc in [includes] if isinstance(includes, str) else includes:
        merged = merge(merged, read_yaml(path.parent / inc, (*_seen, path)))
    return merge(merged, data)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_override(data: dict[str, Any], override: str) -> None:
    """`a.b=3` sets data["a"]["b"] = 3 (the value parsed as YAML)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key=value")
    *path, last = key.split(".")
    node = data
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    node[last] = yaml.safe_load(value)


# ---- checking and building -----------------------------------------------------------------

def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field holds (directly or as `X | None`), else None."""
    hint = _strip(hint)
    if dataclasses.is_dataclass(hint):
        return hint
    found = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(_strip(a))]
    return _strip(found[0]) if found and typing.get_origin(hint) is not list else None


def _strip(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def check_keys(cls: type, data: Any, where: str, section: str = "") -> None:
    """Unknown keys anywhere in `data` (for dataclass `cls`) are errors, with a suggestion."""
    if not isinstance(data, dict):
        raise ConfigError(f"config {where}: {section or 'the config'} must be a mapping of keys, "
                          f"not {data!r}")
    fields = _fields(cls)
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"config {where}: unknown keys {unknown} in "
                          f"{section or 'the top level'}{hint} (known there: "
                          f"{', '.join(sorted(fields))})")
    for key, value in data.items():
        name = f"{section}.{key}" if section else key
        inner = _dataclass_in(fields[key])
        if inner is not None and isinstance(value, dict):
            check_keys(inner, value, where, name)
        elif typing.get_origin(_strip(fields[key])) is list and isinstance(value, list):
            (item,) = typing.get_args(_strip(fields[key])) or (None,)
            if dataclasses.is_dataclass(_strip(item)):
                for i, v in enumerate(value):
                    check_keys(_strip(item), v, where, f"{name}[{i}]")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """A validated `cls` from a mapping (keys checked, values type-checked and coerced)."""
    from pydantic import TypeAdapter, ValidationError

    check_keys(cls, data, where or cls.__name__)
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            problems.append(f"{key} = {err['input']!r}: {err['msg']} (expected "
                            f"{describe_type(_hint_at(cls, err['loc']))})")
        raise ConfigError(f"config {where or cls.__name__}: " + "; ".join(problems)) from None
    except (TypeError, ValueError) as e:  # a __post_init__ check of the dataclass
        raise ConfigError(f"config {where or cls.__name__}: {e}") from None


def _hint_at(cls: type, loc: tuple) -> Any:
    """The type of the field at a pydantic error location (keys and list indices)."""
    hint: Any = cls
    for part in loc:
        bare, inner = _strip(hint), _dataclass_in(hint)
        if isinstance(part, str) and inner is not None:
            hint = _fields(inner).get(part, hint)
        elif isinstance(part, int) and typing.get_origin(bare) in (list, tuple):
            hint = typing.get_args(bare)[0]
    return hint


def describe_type(hint: Any) -> str:
    """A short human name of a field type: int, float, list[str], 'a' | 'b', str or null; uri
    for a data location (an input), output uri for one that is written."""
    if typing.get_origin(hint) is typing.Annotated:
        marks = [m for m in hint.__metadata__ if isinstance(m, Location)]
        if marks:
            return {"input": "uri", "output": "output uri", "scratch": "cache dir"}[marks[0].kind]
    hint = _strip(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not type(None)]
        return " | ".join(parts) + (" or null" if type(None) in args else "")
    if origin in (list, tuple, dict):
        inner = ", ".join(describe_type(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if dataclasses.is_dataclass(hint):
        return "{" + ", ".join(f.name for f in dataclasses.fields(hint)) + "}"
    return getattr(hint, "__name__", str(hint))


# ---- the whole load ------------------------------------------------------------------------

def load(cls: type[T], path: str | Path, overrides: list[str] = ()) -> T:
    """The config of `path` (includes merged, overrides applied), checked, paths absolute."""
    data = read_yaml(path)
    for o in overrides:
        apply_override(data, o)
    cfg = from_dict(cls, data, Path(path).name)
    absolute_paths(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML/JSON data (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(cfg))


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


CONFIG_FILE = "config.yaml"


def write_config(cfg: Any, out_dir: Path) -> Path:
    """The effective config saved beside an output (a report folder): out_dir/config.yaml."""
    path = Path(out_dir) / CONFIG_FILE
    path.write_text(to_yaml(cfg))
    return path


# ---- documentation -------------------------------------------------------------------------

_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")


def field_docs(cls: type) -> dict[str, str]:
    """Each field's one-line doc from the class source: its trailing comment, else the
    comment block above it (which also documents the fields right below it, up to a blank
    line or a field with a comment of its own)."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    docs, block, current = {}, [], ""
    names = {f.name for f in dataclasses.fields(cls)}
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("# "))
            current = ""
            continue
        if not stripped:
            block, current = [], ""
            continue
        if block:
            current, block = " ".join(block), []
        m = _FIELD.match(line)
        if m and m.group(1) in names and m.group(1) not in docs:
            docs[m.group(1)] = (m.group(2) or current).strip()
    return docs


def describe(cls: type, defaults: Any = None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) of every leaf key of a config class, sections flattened."""
    defaults = defaults if defaults is not None else _default(cls)
    docs, rows = field_docs(cls), []
    for name, hint in _fields(cls).items():
        key, value = f"{prefix}{name}", getattr(defaults, name, None)
        inner = _dataclass_in(hint)
        if inner is not None and dataclasses.is_dataclass(value):
            rows += describe(inner, value, f"{key}.")
        else:
            shown = yaml.safe_dump(to_dict(value) if dataclasses.is_dataclass(value) else value,
                                   default_flow_style=True, width=10**6).strip()
            shown = shown.removesuffix("\n...").removesuffix("...").strip()
            rows.append((key, describe_type(hint), shown, docs.get(name, "")))
    return rows


def _default(cls: type) -> Any:
    try:
        return cls()
    except TypeError:  # a class with required fields: no defaults to show
        return None
