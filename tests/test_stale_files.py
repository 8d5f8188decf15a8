"""What a killed or starved process leaves behind is removed: temporary files and folders
named by a pid that is gone (never a live process's), and no partial file on a full disk."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs

from storage.objects import write_bytes
from storage.stale import remove_stale, stale_name
from tests.test_lease import _dead_pid
from training.worker import CHECKPOINT_TMP


def test_only_entries_of_gone_processes_are_removed(tmp_path):
    gone, alive = _dead_pid(), os.getpid()
    for name in (f"{CHECKPOINT_TMP}{gone}-x1", f"{CHECKPOINT_TMP}{alive}-x2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mp_rank_00_model_states.pt").write_bytes(b"0" * 1000)
    (tmp_path / f"{CHECKPOINT_TMP}abc").mkdir()  # no pid: not ours to judge
    (tmp_path / f"manifest.json.tmp-{gone}").write_bytes(b"{")
    assert remove_stale(tmp_path, CHECKPOINT_TMP) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{CHECKPOINT_TMP}{alive}-x2", f"{CHECKPOINT_TMP}abc", f"manifest.json.tmp-{gone}"])
    assert stale_name(CHECKPOINT_TMP) == f"{CHECKPOINT_TMP}{alive}-"

    # Writing the manifest again clears the one a killed writer left half-written.
    write_bytes(pafs.LocalFileSystem(), str(tmp_path / "manifest.json"), b"{}")
    assert (tmp_path / "manifest.json").read_bytes() == b"{}"
    assert not (tmp_path / f"manifest.json.tmp-{gone}").exists()


def test_a_full_disk_leaves_no_partial_file(tmp_path):
    # A real "file too large" from the kernel (RLIMIT_FSIZE), in a child process.
    code = f"""
import resource, signal, pyarrow.fs as pafs
from storage.objects import write_bytes
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_bytes(pafs.LocalFileSystem(), {str(tmp_path / "big.json")!r}, b"x" * 100_000)
except OSError as e:
    print("refused:", e.strerror)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert out.stdout.strip() == "refused: File too large", out.stderr
    assert list(tmp_path.iterdir()) == []
