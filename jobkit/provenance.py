"""What produced an output, recorded beside it: the code's git commit and the versions of the
packages that decide results."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mimir", "torch", "ray", "deepspeed", "transformers", "wtpsplit", "sentencepiece",
            "numpy", "pyarrow")


def git_commit() -> str:
    """HEAD of the checkout the code runs from; under `ray job submit` (a copy without .git)
    the commit the submitter exported as MIMIR_GIT_COMMIT, else "unknown"."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        out = None
    if out is not None and out.returncode == 0:
        return out.stdout.strip()
    return os.environ.get("MIMIR_GIT_COMMIT", "unknown")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance() -> dict:
    return {"git_commit": git_commit(), "versions": package_versions()}
