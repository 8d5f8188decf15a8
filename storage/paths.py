"""Where data lives, and how configs name it: a local path, an s3:// URI (one pyarrow
filesystem interface for both), an https:// URL, or a Hugging Face Hub id.

Config fields that name data are typed `Input` (read) or `Output` (written); one pass over a
config (`absolute_paths`, run when a job loads or starts) makes their local relative paths
absolute, because Ray workers may run in another directory or on another machine.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pyarrow.fs as pafs

from storage import s3


@dataclass(frozen=True)
class Location:
    """Marks a config field as naming data (see the module docstring)."""

    kind: str  # "input" or "output"


Input = Annotated[str, Location("input")]
Output = Annotated[str, Location("output")]

REMOTE = ("s3://", "https://", "http://", "hf://")
# org/name with nothing else: a Hub repository id (SaT models, Hub datasets), unless a local
# path of that name exists.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE)


def is_hub_id(uri: str, base: Path | None = None) -> bool:
    return bool(_HUB_ID.match(uri)) and not ((base or Path.cwd()) / uri).exists()


def absolute(uri: str, kind: str = "input", base: Path | None = None) -> str:
    """A local path made absolute against `base` (default: the working directory); URIs, and
    Hub ids of inputs, stay as they are."""
    if is_remote(uri) or (kind == "input" and is_hub_id(uri, base)):
        return uri
    path = Path(uri.removeprefix("file://")).expanduser()
    return str(path if path.is_absolute() else (base or Path.cwd()) / path)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or an s3://bucket/key URI."""
    if uri.startswith("s3://"):
        return s3.filesystem(), uri[len("s3://"):].rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).absolute())


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def absolute_paths(cfg: Any, base: Path | None = None) -> None:
    """Make every local relative path of a config's `Input` / `Output` fields absolute, in
    place, nested sections and lists of sections included (the one pass every job runs)."""
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    for f in dataclasses.fields(cfg):
        kind, value = _location(hints[f.name]), getattr(cfg, f.name)
        if kind and isinstance(value, str) and value:
            setattr(cfg, f.name, absolute(value, kind, base))
        elif kind and isinstance(value, list):
            setattr(cfg, f.name, [absolute(v, kind, base) for v in value])
        elif dataclasses.is_dataclass(value):
            absolute_paths(value, base)
        elif isinstance(value, list):
            for item in value:
                if dataclasses.is_dataclass(item):
                    absolute_paths(item, base)


def _location(hint: Any) -> str | None:
    """"input" / "output" for a field typed Input / Output (or X | None, or list[X])."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is Annotated:
            marks = [m for m in candidate.__metadata__ if isinstance(m, Location)]
            if marks:
                return marks[0].kind
        if typing.get_origin(candidate) is list:
            inner = _location(typing.get_args(candidate)[0])
            if inner:
                return inner
    return None
