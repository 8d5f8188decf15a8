"""Where data lives, and how configs name it: a local path, an s3:// URI (one pyarrow
filesystem interface for both), an https:// URL, or a Hugging Face Hub id.

Config fields that name data are typed `Input` (read), `Output` (written) or `Scratch` (a
node-local cache); one pass over a config (`absolute_paths`, run when a job loads or starts)
makes their local relative paths absolute, because Ray workers may run in another directory or
on another machine.

Under `ray job submit --working-dir`, a job runs in Ray's unpacked copy of that folder
(`.../_ray_pkg_<hash>`), which moves with every change and is deleted with the session. There a
relative `Output` is refused (its data would vanish with the copy; name an s3:// URI or an
absolute path), and so is a relative `Input` that leads out of the copy (nothing outside it was
uploaded). Files shipped inside it are named by `identity` relative to it, the same as from a
checkout, so a manifest keyed by it never sees a shipped file as new.
"""

from __future__ import annotations

import dataclasses
import os
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
Scratch = Annotated[str, Location("scratch")]  # a per-node cache: anywhere will do
RAY_PACKAGE_PREFIX = "_ray_pkg_"  # how Ray names an unpacked --working-dir

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
    Hub ids of inputs, stay as they are. Under a Ray package folder (see the module docstring)
    a relative output, or a relative input leading out of it, is a ValueError."""
    if is_remote(uri) or (kind == "input" and is_hub_id(uri, base)):
        return uri
    path = Path(uri.removeprefix("file://")).expanduser()
    if path.is_absolute():
        return str(path)
    root = base or Path.cwd()
    package = ray_package(root)
    if package and kind == "output":
        raise ValueError(f"output {uri!r} is a relative path, and this job runs in Ray's copy "
                         f"of its --working-dir ({package}), which is deleted with the session "
                         "and is not shared between nodes: give an s3:// URI or an absolute "
                         "path on storage every node sees")
    resolved = Path(os.path.normpath(root / path))
    if package and package != resolved and package not in resolved.parents:
        raise ValueError(f"input {uri!r} leads out of Ray's copy of the job's --working-dir "
                         f"({package}), where nothing was uploaded: give an s3:// URI or an "
                         "absolute path every node sees")
    return str(resolved)


def ray_package(path: Path | None = None) -> Path | None:
    """The Ray package folder (an unpacked --working-dir) `path` (default: the working
    directory) lies in, or None."""
    path = (path or Path.cwd()).absolute()
    return next((p for p in (path, *path.parents) if p.name.startswith(RAY_PACKAGE_PREFIX)),
                None)


def identity(uri: str) -> str:
    """How a manifest names an input: a URI as it is; a local path relative to the working
    directory when it lies under it (a job run from a checkout and the same job submitted with
    --working-dir name a shipped file alike), else absolute."""
    if is_remote(uri) or is_hub_id(uri):
        return uri
    path, cwd = Path(uri).absolute(), Path.cwd()
    return path.relative_to(cwd).as_posix() if cwd in path.parents else str(path)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or an s3://bucket/key URI."""
    if uri.startswith("s3://"):
        return s3.filesystem(), uri[len("s3://"):].rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).absolute())


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def absolute_paths(cfg: Any, base: Path | None = None, prefix: str = "") -> None:
    """Make every local relative path of a config's `Input` / `Output` fields absolute, in
    place, nested sections and lists of sections included (the one pass every job runs). A
    path refused (see `absolute`) is a ValueError naming its key."""
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    for f in dataclasses.fields(cfg):
        kind, value, key = _location(hints[f.name]), getattr(cfg, f.name), prefix + f.name
        try:
            if kind and isinstance(value, str) and value:
                setattr(cfg, f.name, absolute(value, kind, base))
            elif kind and isinstance(value, list):
                setattr(cfg, f.name, [absolute(v, kind, base) for v in value])
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
        if dataclasses.is_dataclass(value):
            absolute_paths(value, base, f"{key}.")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    absolute_paths(item, base, f"{key}[{i}].")


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
