"""The lock (locks/) against pyproject.toml and the installed environment: every declared range
is met by a pin, every pin is hash-checked, the image and GPU-kit locks use the same versions,
and `make install` installed exactly the lock."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)")


def pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a uv-compiled requirements file."""
    out: dict[str, tuple[str, int]] = {}
    name = None
    for line in path.read_text().splitlines():
        if m := PIN.match(line):
            name = canonicalize_name(m.group(1))
            out[name] = (m.group(2), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            out[name] = (out[name][0], out[name][1] + 1)
    return out


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in [*project["dependencies"], *extras["test"], *extras["dev"]]]


def test_lock_meets_every_declared_range():
    lock = pins(LOCKS / "requirements-cpu.txt")
    for req in declared():
        name = canonicalize_name(req.name)
        if name == "torch":  # installed separately (TORCH_SPEC), not part of the lock
            continue
        assert name in lock, f"{req} is declared in pyproject.toml but not locked: make lock"
        version = lock[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"the lock pins {name}=={version}, outside pyproject.toml's {req}: make lock")


def test_known_breaks_are_bounded():
    lock = pins(LOCKS / "requirements-cpu.txt")
    assert int(lock["transformers"][0].split(".")[0]) < 5  # wtpsplit 2.2.2 breaks on 5.x
    assert int(lock["datasets"][0].split(".")[0]) < 5
    assert "torch" not in lock


@pytest.mark.parametrize("name", ["requirements-cpu.txt", "requirements-image.txt",
                                  "requirements-gpu-py312.txt"])
def test_every_pin_is_hash_checked(name):
    lock = pins(LOCKS / name)
    assert lock
    assert [n for n, (_, hashes) in lock.items() if hashes == 0] == []


@pytest.mark.parametrize("name", ["requirements-image.txt", "requirements-gpu-py312.txt"])
def test_image_and_gpu_kit_use_the_cpu_versions(name):
    cpu = pins(LOCKS / "requirements-cpu.txt")
    other = pins(LOCKS / name)
    assert {n: v for n, (v, _) in other.items()} == {n: cpu[n][0] for n in other}


def test_installed_environment_is_the_lock():
    """What `make install` installed: every locked package at its locked version."""
    wrong = {}
    for name, (version, _) in pins(LOCKS / "requirements-cpu.txt").items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, "installed versions differ from the lock (locked, installed): make install"
